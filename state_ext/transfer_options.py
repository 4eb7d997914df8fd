"""The choices a transfer takes, in a module that imports nothing else.

The engine (``state_ext.transfer``) owns them and checks them; the command line names them
in its signatures, so they live here, where importing them for ``--help`` costs nothing.
Both enums subclass ``str``: their members compare equal to their values, and the engine
also takes the plain words (``"skip"``), as its callers and tests spell them.
"""

from enum import Enum

# Requests in flight at once: the one meaning ``concurrency`` has from the command line down
# to the backends, each of which applies its own limit where it uses the number. file://
# writes on at most 4 threads (FileBackend.put_many_checked: more only queue on the state
# folder's lock); the object stores keep that many requests in flight on their event loop;
# the system database ignores it (one transaction per chunk of states, on one connection);
# a backend's bulk call given no number uses its own default (StateBackend's 8 threads).
CONCURRENCY = 64


class OnConflict(str, Enum):
    """What a transfer does with a destination ID that holds different state."""

    fail = "fail"  # stop before anything is written, and report the conflicts
    skip = "skip"  # leave the destination's state, copy the rest
    overwrite = "overwrite"  # replace what the plan saw there (never a state written after)


class Verify(str, Enum):
    """How the states a transfer created are verified (states it replaced are always read
    back): by the store's own checksum of what it received, or by reading them back."""

    checksum = "checksum"
    read_back = "read-back"
