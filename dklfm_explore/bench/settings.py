"""Sizes, seeds and the record's schema shared by every family of the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "ROW_KEYS", "TRAIN_SEED", "TEST_SEED", "Settings"]

FAMILIES = ("transcription", "transcription-linear", "reaction-diffusion", "lotka-volterra-extrapolation", "paper-protocol")
ROW_KEYS = ("family", "method", "n_train", "n_test", "latent_mse", "output_mse", "coverage95", "nlpd",
            "infer_ms_per_instance", "train_s", "peak_mem_mb", "device")
TRAIN_SEED, TEST_SEED = 0, 1


@dataclass
class Settings:
    """Sizes of one benchmark run; ``quick_settings()`` shrinks everything for a CPU smoke test.

    With ``stream`` (default) DKLFM trains on fresh tasks drawn from each family's simulation spec at every
    step, within ``max_train_seconds``; ``n_train`` / ``n_train_rd`` then size only the reference set that
    fixes the units.  The paper-protocol row always trains on its ``n_train_paper`` fixed tasks.  The quick
    run trains on its fixed tasks: the neural process's epoch budget over as many tasks as a streamed DKLFM
    sees would take most of a CPU test's time.
    """

    n_train: int = 256
    n_train_rd: int = 500
    n_train_paper: int = 256
    n_test: int = 20
    n_points: int = 30
    lv_points: int = 60
    rd_train_grid: tuple[int, int] = (21, 21)
    rd_test_grid: tuple[int, int] = (40, 40)
    epochs: int = 300
    max_train_seconds: float = 480.0
    per_task_iterations: int | None = None
    state_space_iterations: int | None = None
    neural_process_epochs: int | None = None
    """Passes of the neural process over DKLFM's training tasks, its only budget; None: DKLFM's ``epochs`` within
    ``max_train_seconds`` (the full run's parity; the quick run's 20 s would cut a contended CPU's run short at random)."""
    throughput_tasks: int = 10_000
    learning_curve: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    learning_curve_seconds: float = 240.0
    stream: bool = True
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> "Settings":
        return cls(n_train=24, n_train_rd=24, n_train_paper=24, n_test=3, n_points=10, lv_points=16, rd_train_grid=(9, 9),
                   rd_test_grid=(12, 12), epochs=2, max_train_seconds=20.0, per_task_iterations=20, state_space_iterations=5, neural_process_epochs=100,
                   throughput_tasks=64,
                   learning_curve=(8, 16), learning_curve_seconds=10.0, stream=False, quick=True)
