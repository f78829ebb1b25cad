"""WPS-T (OGC ADES best practice) execution: `POST /processes/{id}:{version}/jobs` with array-form inputs.

Always asynchronous: the WPS-T clients this route exists for (EOEPCA-style) expect 201 + Location and poll.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ades.api.auth import current_principal
from ades.api.context import ctx
from ades.api.errors import ApiProblem
from ades.api.processes import get_process
from ades.api.results import results_request
from ades.api.submit import WpstExecute, json_body, parse_body, submit
from ades.api.views import status_info
from ades.cwl import InputError, wpst_inputs_to_map

bp = Blueprint("ades_wpst", __name__)


@bp.post("/processes/<ref>/jobs")
def execute_wpst(ref: str) -> Response:
    c = ctx()
    process = get_process(c, ref)
    body = parse_body(WpstExecute, json_body(request), c.settings)
    try:
        inputs = wpst_inputs_to_map(body.inputs)
    except InputError as err:
        raise ApiProblem(400, "invalid-input", str(err), "Invalid input") from None
    # kept with the job, so its results answer as asked, as for an OGC execute request
    wanted = results_request(body.response, {o.id: {"transmissionMode": o.transmissionMode} for o in body.outputs},
                             process.description.get("outputs") or {})
    with c.jobs.quota.hold(current_principal().user):
        job = submit(c, process, inputs, body.labels, body.mode, body, wanted.model_dump())
    response = jsonify(status_info(job.to_document(), c.base_url))
    response.status_code = 201
    response.headers["Location"] = c.url(f"/jobs/{job.id}")
    return response
