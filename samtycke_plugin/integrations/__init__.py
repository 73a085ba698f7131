"""Ready-made host-side integrations of Samtycke for web frameworks.

Each one carries what every host of that framework would otherwise write by hand
(the :class:`hookspecs.host.Host` database part, the mount of the app's pages, the
migrate step); the app itself never imports a host framework outside this package.
"""
