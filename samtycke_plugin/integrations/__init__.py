"""Ready-made pieces of the host contract (:mod:`hookspecs.host`), one module per framework.

Each module carries what every host of that framework would otherwise write by hand:
how to hand the app a DB-API connection in the host's transaction
(``Host.connection``), how to open a unit of work the app owns
(``Host.unit_of_work``), and how to put the app's SQL text (list filters) into the
framework's own queries.  :mod:`~samtycke_plugin.integrations.sqlalchemy` serves any
SQLAlchemy host (Flask, FastAPI, scripts); the Django and Flask modules sit beside it.
Nothing here is needed: a host may implement the contract directly
(``docs/INTEGRATION.md``).
"""
