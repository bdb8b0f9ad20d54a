"""Land cover: open-vocabulary segmentation of optical composites, one time step per period."""
