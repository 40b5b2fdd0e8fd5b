"""Objects this replica saw in the bucket lately: a redirect may skip its HEAD for them.

A 307 to a presigned URL is sent only for an object known to be there, as the client would
otherwise get the bucket's 404. Knowing costs a HEAD (2-5 ms on the bench machine, most of what
a redirect costs). With `storage.s3.redirect_memo` above zero, an object a HEAD found is
trusted for that long without another HEAD. That is a window:
if another replica deletes the object within it (a purge, an eviction), this replica still
redirects clients to it, and they get the bucket's 404 until the window closes. A delete through
this replica forgets the object at once, so it never redirects to what it deleted itself.
Off (0) by default: then every redirect is preceded by a HEAD.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from mirror.reference import Digest

# Enough for every blob a busy replica redirects to within a few seconds; the oldest go first.
MAX_ENTRIES = 65536


class SeenObjects:
    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self._clock = clock
        self._seen: OrderedDict[Digest, float] = OrderedDict()  # digest -> when, oldest first

    def recent(self, digest: Digest) -> bool:
        """Seen present less than `window` seconds ago."""
        when = self._seen.get(digest)
        if when is None:
            return False
        if self._clock() - when < self.window:
            return True
        del self._seen[digest]
        return False

    def saw(self, digest: Digest) -> None:
        """A HEAD found it just now."""
        if self.window <= 0:
            return
        self._seen.pop(digest, None)
        self._seen[digest] = self._clock()
        while len(self._seen) > MAX_ENTRIES:
            self._seen.popitem(last=False)

    def forget(self, digest: Digest) -> None:
        """Deleted (or found missing) through this replica: the next redirect asks again."""
        self._seen.pop(digest, None)
