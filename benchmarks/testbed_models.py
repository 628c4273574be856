"""The command line shared by the benchmarks that compare `testbed`-world base models by name
(`python benchmarks/<script>.py NAME=BASE_DIR [NAME=BASE_DIR ...] [options]`)."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import torch

import interp
from experiments.config import load_config
from experiments.materials.world import World, build_world


def testbed_models_cli(description: str, add_options: Callable[[argparse.ArgumentParser], None] | None = None
                       ) -> tuple[argparse.Namespace, World, Iterator[tuple[str, interp.LoadedModel]]]:
    """Parse ``NAME=BASE_DIR ...`` (and the options ``add_options`` adds), set torch to 2 threads,
    and build the `testbed` world.

    Returns
    -------
    ``(args, world, models)``; ``models`` loads each named model on the CPU when iterated:
    ``(name, interp.LoadedModel)``.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="NAME=BASE_DIR")
    if add_options is not None:
        add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    world = build_world(load_config("testbed").world)
    specs = [spec.split("=", 1) for spec in args.models]
    return args, world, ((name, interp.load_model(path, device="cpu")) for name, path in specs)
