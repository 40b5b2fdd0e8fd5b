"""Admin jobs over HTTP: long work answers `202 Accepted` when asked (RFC 7240's
`Prefer: respond-async`), and `/admin/jobs/{id}` tells how it goes.

Without the preference the work runs within the request, as it always did: scripts that wait
for the answer keep working, and a client that can poll is not cut by a proxy's timeout.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mirror.errors import NotFound
from mirror.upkeep.jobs import Work
from mirror.web.appkeys import MIRROR

JOBS_PATH = "/admin/jobs"


def prefers_async(request: web.Request) -> bool:
    """Whether a `Prefer` header (there may be several, each a list) asks for respond-async."""
    for header in request.headers.getall("Prefer", []):
        for preference in header.split(","):
            token = preference.split(";", 1)[0].split("=", 1)[0].strip()
            if token.lower() == "respond-async":
                return True
    return False


async def run_or_start(request: web.Request, kind: str, work: Work) -> web.Response:
    """Run `work` now and answer its result, or, when the client prefers, start it as a job and
    answer 202 with the job and where to watch it."""
    if not prefers_async(request):
        return web.json_response(await work(lambda done, total: None))
    job = request.app[MIRROR].upkeep.jobs.start(kind, work)
    return web.json_response(
        job.as_dict(),
        status=202,
        headers={"Location": f"{JOBS_PATH}/{job.id}", "Preference-Applied": "respond-async"},
    )


async def job(request: web.Request) -> dict[str, Any]:
    job_id = request.match_info["id"]
    found = request.app[MIRROR].upkeep.jobs.get(job_id)
    if found is None:
        # Unknown, or finished so long ago that it was forgotten.
        raise NotFound(f"no job {job_id[:100]!r}")
    return found.as_dict()


async def jobs(request: web.Request) -> dict[str, Any]:
    return {"jobs": [job.as_dict() for job in request.app[MIRROR].upkeep.jobs.recent()]}
