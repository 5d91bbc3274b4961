"""`kfpgrpc pipelines upload|list|get`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from kfpgrpc.client import Client
from kfpgrpc.commands.common import (
    action,
    add_list_options,
    existing_file,
    list_arguments,
    print_details,
    print_table,
    say,
    show,
    subcommands,
    when,
)
from kfpgrpc.v1 import pipeline_pb2


def register(commands: Any, options: argparse.ArgumentParser) -> None:
    actions = subcommands(commands, "pipelines", "pipelines and their versions")
    upload = action(actions, "upload", upload_pipeline,
                    "upload a compiled pipeline (YAML or JSON) as a new pipeline, or as a new version of an existing one", options)
    upload.add_argument("file", type=existing_file, metavar="FILE")
    upload.add_argument("--name", default="", help="the pipeline's name (default: the spec's pipelineInfo.name)")
    upload.add_argument("--version-name", default="", help="the version's name (default: v1, v2, …)")
    upload.add_argument("--description", default="")
    listing = action(actions, "list", list_pipelines, "list pipelines", options)
    add_list_options(listing)
    action(actions, "get", get_pipeline, "show a pipeline and its versions", options, target="NAME_OR_ID")


def upload_pipeline(args: argparse.Namespace, client: Client) -> int:
    version = client.upload_pipeline(args.file, args.name, args.version_name, args.description)
    return show(args, version, lambda v: say(
        f"uploaded version {v.name} ({v.pipeline_version_id}) of pipeline {client.get_pipeline(v.pipeline_id).name} ({v.pipeline_id})"))


def list_pipelines(args: argparse.Namespace, client: Client) -> int:
    return show(args, list(client.list_pipelines(**list_arguments(args))), pipeline_table)


def get_pipeline(args: argparse.Namespace, client: Client) -> int:
    pipeline = client.find_pipeline(args.target)

    def details(pipeline: pipeline_pb2.Pipeline) -> None:
        print_details({
            "Pipeline ID": pipeline.pipeline_id,
            "Name": pipeline.name,
            "Display name": pipeline.display_name if pipeline.display_name != pipeline.name else "",
            "Description": pipeline.description,
            "Created": when(pipeline.created_at),
        })
        say()
        versions = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc", limit=20)
        print_table(["VERSION ID", "NAME", "CREATED", "DESCRIPTION"],
                    [[v.pipeline_version_id, v.name, when(v.created_at), v.description] for v in versions])

    return show(args, pipeline, details)


def pipeline_table(pipelines: Sequence[pipeline_pb2.Pipeline]) -> None:
    print_table(["PIPELINE ID", "NAME", "CREATED", "DESCRIPTION"],
                [[p.pipeline_id, p.name, when(p.created_at), p.description] for p in pipelines])
