"""No Django models: Samtycke's tables are its own (Alembic, ``samtycke_`` prefix).

The module exists because Django sends ``post_migrate`` only to apps that have one.
"""
