"""Every difference between the Python versions ferroloop runs on, decided
once by probing what the running asyncio has (never by comparing version
numbers: asyncio changes between patch releases too). Imported first by the
package; the native code reads these names too."""

import inspect as _inspect

from asyncio import base_events as _base_events

# asyncio's Server keeps the set of its client transports (for
# close_clients()/abort_clients()): _attach/_detach take the transport.
# Before, they only counted active connections.
SERVER_ATTACH_TAKES_TRANSPORT = len(_inspect.signature(_base_events.Server._attach).parameters) == 2
