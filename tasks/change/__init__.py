"""Change: open-vocabulary change between two periods (DynamicEarth M-C-I / I-M-C)."""
