"""KFP's ExperimentService over REST (kfp-server-api's ExperimentServiceApi): the JSON twin of
kfpgrpc/api/experiments.py, calling the same core.

    POST   /apis/v2beta1/experiments                       body: Experiment -> Experiment
    GET    /apis/v2beta1/experiments/{experiment_id}       -> Experiment
    GET    /apis/v2beta1/experiments?page_token&page_size&sort_by&filter -> ListExperimentsResponse
    POST   /apis/v2beta1/experiments/{experiment_id}:archive    -> {}
    POST   /apis/v2beta1/experiments/{experiment_id}:unarchive  -> {}
    DELETE /apis/v2beta1/experiments/{experiment_id}       -> {}

Paths and shapes are those of KFP's backend/api/v2beta1/experiment.proto (google.api.http);
`filter` is KFP's URL-encoded JSON filter, parsed as ListExperiments parses it.
"""

from __future__ import annotations

from google.protobuf import empty_pb2
from starlette.requests import Request
from starlette.responses import Response

from kfpgrpc.api.convert import list_request
from kfpgrpc.api.experiments import experiment_to_proto
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.experiments import Experiments
from kfpgrpc.http.endpoints import Endpoint
from kfpgrpc.http.messages import body_into, request_message, respond
from kfpgrpc.v1 import experiment_pb2 as pb

PREFIX = "/apis/v2beta1/experiments"


class ExperimentRoutes:
    def __init__(self, experiments: Experiments, max_message_bytes: int) -> None:
        self._experiments = experiments
        self._max_message_bytes = max_message_bytes

    def endpoints(self) -> list[Endpoint]:
        one = PREFIX + "/{experiment_id}"
        return [
            Endpoint("POST", PREFIX, self.create_experiment, "Create an experiment.", pb.CreateExperimentRequest, pb.Experiment, body="experiment"),
            Endpoint("GET", PREFIX, self.list_experiments, "List experiments.", pb.ListExperimentsRequest, pb.ListExperimentsResponse),
            Endpoint("POST", one + ":archive", self.archive_experiment, "Archive an experiment.", pb.ArchiveExperimentRequest),
            Endpoint("POST", one + ":unarchive", self.unarchive_experiment, "Unarchive an experiment.", pb.UnarchiveExperimentRequest),
            Endpoint("GET", one, self.get_experiment, "Get an experiment.", pb.GetExperimentRequest, pb.Experiment),
            Endpoint("DELETE", one, self.delete_experiment, "Delete an experiment.", pb.DeleteExperimentRequest),
        ]

    async def create_experiment(self, request: Request) -> Response:
        experiment = await body_into(request, pb.Experiment(), "experiment", self._max_message_bytes)
        return respond(experiment_to_proto(await self._experiments.create(experiment.display_name, experiment.description)))

    async def get_experiment(self, request: Request) -> Response:
        experiment_id = request_message(request, pb.GetExperimentRequest()).experiment_id
        return respond(experiment_to_proto(await self._experiments.get(experiment_id)))

    async def list_experiments(self, request: Request) -> Response:
        page = await self._experiments.list(list_request(request_message(request, pb.ListExperimentsRequest())))
        experiments, next_page_token = fit_page(page, experiment_to_proto)
        return respond(pb.ListExperimentsResponse(experiments=experiments, total_size=page.total_size, next_page_token=next_page_token))

    async def archive_experiment(self, request: Request) -> Response:
        await self._experiments.archive(request_message(request, pb.ArchiveExperimentRequest()).experiment_id)
        return respond(empty_pb2.Empty())

    async def unarchive_experiment(self, request: Request) -> Response:
        await self._experiments.unarchive(request_message(request, pb.UnarchiveExperimentRequest()).experiment_id)
        return respond(empty_pb2.Empty())

    async def delete_experiment(self, request: Request) -> Response:
        await self._experiments.delete(request_message(request, pb.DeleteExperimentRequest()).experiment_id)
        return respond(empty_pb2.Empty())
