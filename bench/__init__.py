"""The P1-P7 benchmark: the cost of consent in a booking platform at a million clients.

``python -m bench`` (or ``tox -e bench``) generates a data set of host-owned clients
and consent events, then measures each figure against a floor measured in the same
run on the same database (see ``../../shared/brief/quality.md`` and ``README`` below).
"""
