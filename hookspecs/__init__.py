"""The host contract between a booking platform and its installable apps.

A host builds its plugin manager with :func:`hookspecs.facade.make_plugin_manager`
(or by hand with :data:`PROJECT`, :class:`hookspecs.spec.BookingSpecs` and the
entry-point group :data:`ENTRY_POINT_GROUP`) and calls the hooks through the
typed facade :class:`hookspecs.facade.AppHooks`.

Apps mark their implementations with :data:`hookimpl`.
"""

from __future__ import annotations

import pluggy

#: The pluggy project name: hosts create ``pluggy.PluginManager(PROJECT)``.
PROJECT = "booking"
#: The entry-point group in which installed apps register themselves.
ENTRY_POINT_GROUP = "booking.apps"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec"]
