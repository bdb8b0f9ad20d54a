"""Product-agnostic steps: grid, catalog, reading, cube store, tile runner, worker model,
rendering."""
