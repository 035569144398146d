"""Which descriptors a command may inherit, and the faster start that relies on it.

`subprocess.Popen(close_fds=True)` closes every descriptor above 2 in the child, one way
or another, on every start. `posix_spawn` starts a command at about two thirds of the
cost but closes nothing: it is safe only once no descriptor of this process is left
inheritable. `seal_inherited_descriptors()` makes it so for everything open now (what the
process inherited from its parent); descriptors Python opens later are not inheritable
(PEP 446), and commands keep only their own stdin, stdout and stderr.
"""

from __future__ import annotations

import contextlib
import os

_sealed = False


def seal_inherited_descriptors() -> None:
    """Mark every open descriptor above 2 close-on-exec, and let commands be started
    through `posix_spawn` from now on. For a process that owns its descriptors (the
    daemon): a descriptor made inheritable later on purpose would reach commands."""
    global _sealed
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own descriptor, now closed
                os.set_inheritable(fd, False)
    _sealed = True


def sealed() -> bool:
    """Whether `seal_inherited_descriptors()` was called in this process."""
    return _sealed
