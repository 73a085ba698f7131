"""Alembic migrations of the app (own version table: ``samtycke_alembic_version``)."""
