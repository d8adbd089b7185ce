"""Storage layer: the lake (Delta tables), the catalog (SQLAlchemy) and their helpers."""
