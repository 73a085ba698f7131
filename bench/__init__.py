"""The C1-C8 benchmark: what installing Samtycke costs a booking platform.

``python -m bench`` (or ``tox -e bench``) generates a data set in the example platform's
and the app's tables, then measures the app inside the platform's own work (bookings,
pages, batches) against the same work without the app, in the same run (see
``bench/README.md``).
"""
