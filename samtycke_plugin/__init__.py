"""Samtycke: GDPR client consent for booking and practice-management platforms.

The host talks to the app only through the hooks in :mod:`hookspecs`; this
package holds the consent domain, the ledger, storage, mail, rendering, web
handlers and the CLI.
"""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
