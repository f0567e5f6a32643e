"""Frame stores (HDF5/H5MD, zarr v3), their schema, datasets and converters."""
