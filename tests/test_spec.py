"""SimulationSpec: round trips, the keyword form, task sets that restore it (old 'settings' files too), bad input."""

import json

import numpy as np
import pytest
import torch

from dklfm_explore import SimulationSpec, TaskSet, open_taskset, simulate
from dklfm_explore.errors import InvalidInputError
from dklfm_explore.systems import ForcePrior, get_system
from dklfm_explore.systems.mesh import make_mesh


def test_every_builtin_system_round_trips_through_json():
    for name in ("transcription", "transcription-linear", "lotka-volterra", "reaction-diffusion"):
        spec = SimulationSpec(name).resolved()
        assert SimulationSpec.from_json(spec.to_json()) == spec
        assert SimulationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    explicit = SimulationSpec("transcription", time=np.linspace(0, 12, 7), parameter_ranges={"decay_rate": (0.5, 0.9)},
                              force_prior=ForcePrior(lengthscale=(2.0, 3.0)), seed=4, chunk_size=3)
    again = SimulationSpec.from_json(explicit.to_json())
    assert again == explicit and again.time == tuple(np.linspace(0, 12, 7)) and again.ranges == {"decay_rate": (0.5, 0.9)}


def test_simulate_takes_a_spec_and_gives_the_keyword_forms_tasks():
    spec = SimulationSpec("transcription", n_points=9, n_outputs=3, noise_level=0.2, seed=5, chunk_size=4)
    by_spec = simulate(spec, 10)
    by_keywords = simulate("transcription", 10, n_points=9, n_outputs=3, noise_level=0.2, seed=5, chunk_size=4)
    np.testing.assert_array_equal(by_spec.y().numpy(), by_keywords.y().numpy())
    assert by_spec.spec == by_keywords.spec == spec.resolved()
    assert simulate(spec, 10, seed=6).spec.seed == 6
    with pytest.raises(InvalidInputError, match="n_points"):
        simulate(spec, 10, n_points=12)


def test_task_set_file_restores_the_spec_and_its_mesh(tmp_path):
    space = np.linspace(0, 1, 6)
    time = np.union1d(np.linspace(0, 1, 5), np.linspace(0, 1, 9))
    tasks = simulate("reaction-diffusion", 3, space=space, time=time, seed=2, out=tmp_path / "rd.nc")
    spec = open_taskset(tmp_path / "rd.nc").spec
    assert spec.time == tuple(time) and spec.space == tuple(space)
    system = get_system("reaction-diffusion")
    explicit = make_mesh(system, time=torch.tensor(time), space=torch.tensor(space))
    torch.testing.assert_close(spec.mesh().force_space, explicit.force_space, rtol=0, atol=0)
    # The default grid, which the exact LFM used before the spec, has another force-space grid.
    assert make_mesh(system).force_space.numel() != explicit.force_space.numel()
    np.testing.assert_array_equal(simulate(spec, 3).y().numpy(), tasks.y().numpy())


def _as_old_file(tasks: TaskSet, settings: dict) -> TaskSet:
    """The task set as the package wrote it before the spec: attrs 'settings' JSON, no 'spec'."""
    dataset = tasks.dataset.copy()
    del dataset.attrs["spec"]
    dataset.attrs["settings"] = json.dumps(settings, sort_keys=True)
    return TaskSet(dataset)


def test_old_settings_files_restore_a_spec_that_resimulates_the_same_tasks():
    tasks = simulate("transcription", 6, n_points=11, seed=3, noise_level=0.05, parameter_ranges={"decay_rate": (0.5, 1.0)})
    prior = get_system("transcription").force_prior
    old = _as_old_file(tasks, dict(n_points=11, grid=None, t_range=None, explicit_mesh=False, seed=3, noise_level=0.05,
                                   parameter_ranges={"decay_rate": [0.5, 1.0]}, force_prior=prior.__dict__, chunk_size=1024))
    spec = old.spec
    assert spec.force_prior == prior and spec.n_outputs == 5
    np.testing.assert_array_equal(simulate(spec, 6).y().numpy(), tasks.y().numpy())
    explicit = simulate("transcription", 2, time=np.linspace(0, 12, 5), seed=1)
    old_explicit = _as_old_file(explicit, dict(n_points=None, grid=None, t_range=None, explicit_mesh=True, seed=1, noise_level=0.1,
                                               parameter_ranges={}, force_prior=prior.__dict__, chunk_size=1024))
    assert old_explicit.spec.time == tuple(np.linspace(0, 12, 5))
    measurements = TaskSet(tasks.dataset.drop_attrs())
    assert measurements.spec is None


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(n_points=2), "at least 3"),
        (dict(time=(0.0, 2.0, 1.0)), "strictly increasing"),
        (dict(t_range=(3.0, 1.0)), "end after"),
        (dict(noise_level=11), "noise_level"),
        (dict(parameter_ranges={"decay_rate": (0.9, 0.1)}), "low"),
        (dict(seed=1.5), "integer"),
        (dict(force_prior={"lenghtscale": (1, 2)}), "lenghtscale"),
    ],
)
def test_bad_specs_are_one_sentence_errors(fields, match):
    with pytest.raises(InvalidInputError, match=match):
        SimulationSpec("transcription", **fields)


def test_unknown_fields_and_meshes_of_the_wrong_kind_are_refused():
    with pytest.raises(InvalidInputError, match="n_point"):
        SimulationSpec.from_dict({"system": "transcription", "n_point": 5})
    with pytest.raises(InvalidInputError, match="--points"):
        SimulationSpec("transcription", grid=(5, 5)).resolved()
    with pytest.raises(InvalidInputError, match="space"):
        SimulationSpec("transcription", space=(0.0, 1.0)).mesh()
