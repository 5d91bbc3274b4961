"""ExperimentService: protobuf in, core call, protobuf out."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from kfpgrpc.api.convert import list_request, timestamp
from kfpgrpc.api.sizes import fit_page
from kfpgrpc.core.experiments import Experiments
from kfpgrpc.domain import Experiment
from kfpgrpc.v1 import experiment_pb2 as pb
from kfpgrpc.v1 import experiment_pb2_grpc


def experiment_to_proto(experiment: Experiment) -> pb.Experiment:
    return pb.Experiment(
        experiment_id=experiment.experiment_id,
        display_name=experiment.display_name,
        description=experiment.description,
        created_at=timestamp(experiment.created_at),
        storage_state=pb.Experiment.StorageState.Value(experiment.storage_state),
        last_run_created_at=timestamp(experiment.last_run_created_at),
    )


class ExperimentServicer(experiment_pb2_grpc.ExperimentServiceServicer):
    def __init__(self, experiments: Experiments) -> None:
        self._experiments = experiments

    async def CreateExperiment(self, request: pb.CreateExperimentRequest, context: grpc.aio.ServicerContext) -> pb.Experiment:
        experiment = request.experiment
        return experiment_to_proto(await self._experiments.create(experiment.display_name, experiment.description))

    async def GetExperiment(self, request: pb.GetExperimentRequest, context: grpc.aio.ServicerContext) -> pb.Experiment:
        return experiment_to_proto(await self._experiments.get(request.experiment_id))

    async def ListExperiments(
        self, request: pb.ListExperimentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListExperimentsResponse:
        page = await self._experiments.list(list_request(request))
        experiments, next_page_token = fit_page(page, experiment_to_proto)
        return pb.ListExperimentsResponse(experiments=experiments, total_size=page.total_size, next_page_token=next_page_token)

    async def ArchiveExperiment(self, request: pb.ArchiveExperimentRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._experiments.archive(request.experiment_id)
        return empty_pb2.Empty()

    async def UnarchiveExperiment(
        self, request: pb.UnarchiveExperimentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._experiments.unarchive(request.experiment_id)
        return empty_pb2.Empty()

    async def DeleteExperiment(self, request: pb.DeleteExperimentRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._experiments.delete(request.experiment_id)
        return empty_pb2.Empty()
