"""Pipeline steps of terrawatch: a product-agnostic ``core`` and one package per product.

Each product package (``landcover``, ``change``, ``flood``, ``alignearth``) has the same stage
names (``plan``, ``tile``, ``cube``, ``publish``) and imports only ``core`` and ``models``,
never another product.
"""
