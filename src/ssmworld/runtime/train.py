"""The training driver: N envs through gymnasium's vector API, replay, updates at a fixed train ratio, evaluation,
logging and checkpoints with exact-state resume.

Replay convention per env step t: obs o_t, the action a_t taken after o_t (zeros on the last step of an episode), the
reward r_t that arrived with o_t, is_first (o_t starts an episode), is_last (o_t ends it), is_terminal (it ends in a
terminal state; time-limit truncation is NOT termination, so the critic bootstraps through it).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from .. import envs
from ..dreamer.agent import require_compiler
from ..dreamer.replay import ReplayBuffer
from ..errors import Interrupted, UserError, check_choices
from ..nn import bfloat16_is_native
from . import acting_state, run_state
from .config import Config
from .config_file import save_yaml
from .distributed import Group, rank_device
from .episodes import batch_to_tensors, build_agent, evaluate, obs_to_tensors, resolve_device, to_env_actions
from .logger import Logger
from .schedule import Evaluations, EveryN, MetricWindow, TrainRatio, WallClock, learning_starts


class Trainer:
    """Owns the envs, agent, replay and counters of one run. ``run()`` trains to ``cfg.train.steps`` env steps.

    Everything that can be wrong with the config (unknown env, unsupported spaces, bad core options) fails in
    ``__init__`` before anything is written to the logdir.

    Data-parallel (``group`` from distributed.setup under torchrun): every rank has its own envs (seeded apart),
    replay and checkpoint directory (rank r > 0 under ``logdir/rank-r``); ``step`` counts the env steps of all ranks;
    rank 0 logs, evaluates and writes the run's files."""

    def __init__(self, cfg: Config, logdir: str | None = None, resume: bool = False, quiet: bool = False,
                 group: Group | None = None):
        tc = self.tc = cfg.train
        self.cfg, self.logdir, self.quiet = cfg, logdir, quiet
        self.group = group or Group()
        self.seed = tc.seed + 1_000_003 * self.group.rank  # rank 0 = the single-process run
        check_choices(tc, "train")
        tc.__post_init__()  # ranges, also of what the command line set after loading (--steps, --seed)
        imagination = cfg.agent.imagination
        if imagination.starts == "replay":
            need = imagination.number(tc.batch_size, tc.sequence_length) + tc.envs * (imagination.context - 1)
            need *= self.group.world_size  # prefill counts the steps of all ranks
            if tc.sampler == "dfs" and tc.prefill < need:  # dfs draws the contexts without replacement
                raise UserError(f"train.prefill must be >= {need} (imagination starts + envs x (context - 1), per "
                                 f"rank) for dfs imagination contexts, got {tc.prefill}")
        if tc.context == "episode" and imagination.starts == "batch":
            raise UserError("train.context=episode needs agent.imagination.starts posterior or replay (batch "
                             "contexts start from the initial state)")
        require_compiler(cfg.agent)
        if tc.stop_at is not None and (tc.eval_every <= 0 or tc.eval_episodes <= 0):
            raise UserError("train.stop_at needs evaluations (train.eval_every and eval_episodes > 0), got "
                             f"{tc.eval_every}, {tc.eval_episodes}")
        self.device = rank_device(resolve_device(tc.device), self.group)
        torch.manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        probe = envs.make(tc.env, seed=self.seed, **tc.env_options)
        self.action_space = probe.action_space
        self.agent = build_agent(cfg.agent, probe, self.device)
        self.agent.sync = self.group  # gradients and statistics averaged over data-parallel ranks
        self.group.broadcast_module(self.agent)  # same initial weights on every rank
        self.discrete, self.action_dim = self.agent.discrete, self.agent.action_dim
        probe.close()
        chunk = max(tc.replay_chunk, tc.sequence_length)
        self.replay = ReplayBuffer(max(tc.replay_capacity, chunk), chunk, tc.sampler, seed=self.seed + 1,
                                   dfs_temperature=tc.dfs_temperature)
        self.step = self.updates = self.episodes = 0
        # the schedules of the loop (schedule.py); their step-based state is part of a checkpoint
        self.ratio = TrainRatio(tc.envs * tc.train_ratio / (tc.batch_size * tc.sequence_length))
        self.learning_starts = learning_starts(tc.prefill, tc.sequence_length, tc.batch_size, tc.envs,
                                               self.group.world_size, tc.sampler)
        self.evaluations = Evaluations(tc.eval_every, tc.steps)
        self.log_rows = EveryN(tc.log_every)  # train/ rows at multiples of log_every: a resumed run writes the same
        self.checkpoints = EveryN(tc.checkpoint_every)
        self.window = MetricWindow()  # train metrics since the last train/ row
        self.seconds_before = 0.0  # wall-clock seconds of earlier sessions of this run (resume)
        self.started = time.perf_counter()
        self.saved_acting: tuple[dict[str, Any], dict[str, Any]] | None = None  # (tensors, state) from a checkpoint
        self.interrupted = 0  # the signal that asked the run to stop (run(handle_signals=True))
        self.astray = ""  # a warning: envs whose saved episodes replayed differently (acting_state.restore)
        self.unsaved_episodes = ""  # why the episodes in progress at the checkpoint are not continued, if so
        if resume:
            run_state.restore(self)
        self.vec = gym.vector.SyncVectorEnv([lambda: envs.make(tc.env, **tc.env_options) for _ in range(tc.envs)],
                                            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
        self._restart_envs()
        if self.saved_acting is not None:  # the checkpoint holds the episodes in progress: continue them if it can
            self._set_acting_state(*self.saved_acting)

    @property
    def step_size(self) -> int:
        """Env steps of one iteration: envs per rank x ranks."""
        return self.tc.envs * self.group.world_size

    def state_dir(self) -> str:
        """Where this rank's checkpoints and replay live: the logdir (rank 0) or logdir/rank-<r>."""
        assert self.logdir is not None
        return self.logdir if self.group.main else os.path.join(self.logdir, f"rank-{self.group.rank}")

    def _restart_envs(self) -> None:
        """Start fresh episodes in every env, seeded from (seed, step): at the start of a run, and on resume unless the
        checkpoint holds the episodes in progress (acting_state.py)."""
        n = self.tc.envs
        self.obs, _ = self.vec.reset(seed=self.seed + 7919 * self.step)
        self.reward, self.is_first = np.zeros(n, np.float32), np.ones(n, bool)
        self.is_last, self.is_terminal = np.zeros(n, bool), np.zeros(n, bool)
        self.episode_return, self.episode_length = np.zeros(n), np.zeros(n, int)
        self.policy_state = None

    _ACTING_ARRAYS = ("reward", "is_first", "is_last", "is_terminal", "episode_return", "episode_length")

    def _acting_state(self) -> tuple[dict[str, Any], dict[str, Any]] | str:
        """The episodes in progress and the agent's state in them, or why not (acting_state.capture)."""
        arrays = {"obs": dict(self.obs), **{k: getattr(self, k) for k in self._ACTING_ARRAYS}}
        return acting_state.capture(self.vec, arrays, self.policy_state)

    def _set_acting_state(self, tensors: dict[str, Any], state: dict[str, Any]) -> None:
        if state["has_policy"] and not acting_state.same_layout(tensors["policy"], self.agent.initial_state(1)):
            self.unsaved_episodes = "the agent's state in them is laid out as another ssmworld version saved it"
            return  # the fresh episodes of _restart_envs stay
        arrays, self.policy_state, astray = acting_state.restore(self.vec, tensors, state, self.device)
        self.astray = (f"env(s) {astray} replayed their saved episodes to other observations (another env or MuJoCo "
                       "version?): the run goes on from there, not exactly") if astray else ""
        if self.astray and (self.quiet or not self.group.main):  # else the start-up message says it
            warnings.warn(self.astray, RuntimeWarning, stacklevel=2)
        self.obs = arrays.pop("obs")
        for key in self._ACTING_ARRAYS:
            setattr(self, key, arrays[key])

    # ---- the loop --------------------------------------------------------------------------------------------------
    def run(self, handle_signals: bool = False) -> dict[str, Any]:
        """Train to train.steps env steps (or until train.minutes or train.stop_at), evaluate, checkpoint; returns
        the summary (also written to summary.json). ``handle_signals``: SIGINT/SIGTERM let the current step finish,
        write a checkpoint and raise ``Interrupted`` (the command line exits with 128 + the signal's number)."""
        tc, main = self.tc, self.group.main
        if self.step >= tc.steps and self.logdir and os.path.exists(os.path.join(self.logdir, "summary.json")):
            if not self.quiet:  # resumed a finished run: nothing to do
                print(f"ssmworld: the run already ended at step {self.step}; pass --steps N (> {self.step}) to train "
                      "it further", file=sys.stderr)
            self.vec.close()
            with open(os.path.join(self.logdir, "summary.json")) as f:
                return json.load(f)
        if self.logdir and main:
            os.makedirs(self.logdir, exist_ok=True)
        logger = Logger(self.logdir if main else None, tc.steps, self.step, quiet=self.quiet or not main,
                        learning_starts=self.learning_starts)
        if self.logdir and main:
            save_yaml(self.cfg, os.path.join(self.logdir, "config.yaml"))
            if os.path.exists(os.path.join(self.logdir, "summary.json")):  # resumed with more steps: not ended yet
                os.remove(os.path.join(self.logdir, "summary.json"))
        self._print_banner(logger)
        self.started = time.perf_counter()
        try:
            with run_state.stop_on_signals(self, handle_signals):
                final, solved = self._loop(logger)
            if self.interrupted:
                if self.logdir:
                    self.save_checkpoint(acting=True)
                raise Interrupted(self.interrupted, self.step, self.logdir)
            if self.logdir:  # with the episodes in progress: a session ended by train.minutes resumes exactly, as
                self.save_checkpoint(acting=True)  # does a finished run given more --steps
        finally:
            logger.close()
            self.vec.close()
        summary = {"env": tc.env, "preset": self.cfg.preset, "size": self.cfg.size, "steps": self.step,
                   "updates": self.updates, "episodes": self.episodes, "solved": solved,
                   "seconds": round(self.seconds_before + time.perf_counter() - self.started, 1),  # all sessions
                   **{k.replace("eval/", "eval_"): v for k, v in final.items()}}
        if self.logdir and main:  # written last, atomically: it marks a run that ended normally (sweeps skip it)
            with open(os.path.join(self.logdir, "summary.json.tmp"), "w") as f:
                json.dump(summary, f)
            os.replace(os.path.join(self.logdir, "summary.json.tmp"), os.path.join(self.logdir, "summary.json"))
        return summary

    def _print_banner(self, logger: Logger) -> None:
        tc = self.tc
        logger.print(f"ssmworld: {self.cfg.preset}/{self.cfg.size} on {tc.env}, {tc.steps} env steps, device "
                     f"{self.device}" + (f", resumed at step {self.step}" if self.step else "")
                     + (f", {self.group.world_size} data-parallel ranks" if self.group.active else ""))

        def size(n: int) -> str:
            return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}k"

        counts = self.agent.world_model.parameter_counts()
        ac = self.agent.actor_critic
        actor, critic = (sum(p.numel() for p in m.parameters()) for m in (ac.actor, ac.critic))
        logger.print(f"world model {size(counts.pop('total'))} parameters (" + ", ".join(
            f"{k} {size(v)}" for k, v in counts.items() if v) + f"); actor {size(actor)}, critic {size(critic)}")
        if self.cfg.agent.compile_imagination:
            logger.print("ssmworld: agent.compile_imagination: the first update compiles the imagination step "
                         "(10-60 s on a CPU)")
        if self.cfg.agent.precision == "bfloat16" and not bfloat16_is_native(self.device):
            logger.print(f"ssmworld: warning: agent.precision=bfloat16 on {self.device}, which has no bfloat16 matmul "
                         "units: it runs emulated, several times slower than float32 (on a CPU: one without AVX-512 "
                         "or AMX)")
        if self.astray:
            logger.print(f"ssmworld: warning: {self.astray}")
        if self.unsaved_episodes:
            logger.print(f"ssmworld: note: the checkpoint's episodes in progress are not continued ({tc.env}: "
                         f"{self.unsaved_episodes}): fresh episodes start, so the run continues exactly up to the "
                         "checkpoint, not after")
        if tc.steps <= self.learning_starts:
            logger.print(f"ssmworld: warning: {tc.steps} env steps end before learning starts at step "
                         f"{self.learning_starts} (train.prefill={tc.prefill}; train.sequence_length="
                         f"{tc.sequence_length} steps in each of {self.step_size} env streams): no updates will run")

    def _loop(self, logger: Logger) -> tuple[dict[str, Any], bool]:
        """Act, update at the train ratio, log, evaluate and checkpoint until the end. Returns (the final
        evaluation's row, whether it met train.stop_at); on an interrupt ({}, False) with ``self.interrupted`` set."""
        tc, main = self.tc, self.group.main
        budget, checkpoint_clock = WallClock(tc.minutes), WallClock(tc.checkpoint_minutes)
        self.window.restart(self.step, self.updates)
        evaluated: tuple[int, dict[str, Any]] | None = None  # the last periodic evaluation: (step, row)
        while self.step < tc.steps:
            # wall-clock decisions and signals differ between ranks: rank 0's (one small broadcast per env step)
            decision = self.group.agree(4 * bool(self.interrupted) + 2 * (tc.minutes > 0 and budget.passed())
                                        + checkpoint_clock.passed(), self.device)
            if decision & 4:
                self.interrupted = self.interrupted or signal.SIGTERM
                return {}, False
            if decision & 2:
                logger.print(f"ssmworld: time budget of {tc.minutes:g} minutes reached at step {self.step}")
                break
            tick = time.perf_counter()
            for row in self._env_step():
                logger.write(self.step, row)
            self.window.env_seconds += time.perf_counter() - tick
            if self.step >= self.learning_starts:
                for _ in range(self.ratio.updates()):
                    metrics, warmup = self._update()
                    self.window.add(metrics)
                    if warmup:
                        logger.write(self.step, warmup)
            crossed = self.log_rows.crossed(self.window.step, self.step)
            if crossed or self.step >= tc.steps:  # the run's last row keeps its window: given more --steps, the
                logger.write(self.step, self._train_row(new_window=crossed))  # run averages as if uninterrupted
            if self.evaluations.due(self.step):
                tick = time.perf_counter()
                result = self._evaluate(logger) if main else {}
                self.window.started += time.perf_counter() - tick  # perf/ rates measure training, not evaluations
                logger.write(self.step, result)
                evaluated = (self.step, result)
                if tc.stop_at is not None and self.group.agree(int(self._solved(result)), self.device):
                    logger.print(f"ssmworld: solved at step {self.step} (eval {tc.stop_metric} "
                                 f"{result.get(f'eval/{tc.stop_metric}', 0):g} >= train.stop_at={tc.stop_at:g})")
                    return result, True  # the evaluation that met the target is the final one
            due = self.checkpoints.crossed(self.step - self.step_size, self.step) or decision & 1
            if self.logdir and due and self.step < tc.steps:
                # the episodes in progress are saved where the envs can be; the others run on (a resumed run
                # restarts them: resume is exact only where the envs were saved)
                self.save_checkpoint(acting=True)
                checkpoint_clock.restart()
            logger.progress(self.step, self.updates)
        if evaluated is not None and evaluated[0] == self.step:  # the run ended right after an evaluation: the same
            final = evaluated[1]                                # policy and seed would give the same row again
        else:
            final = self._evaluate(logger, final=True) if main else {}
            logger.write(self.step, final)
        self.evaluations.skip_to(self.step)  # given more --steps, the run does not evaluate this step again
        # the final evaluation counts too: a run that meets train.stop_at at its last step is solved
        return final, tc.stop_at is not None and bool(self.group.agree(int(self._solved(final)), self.device))

    def _train_row(self, new_window: bool = True) -> dict[str, Any]:
        """The train/ and perf/ row of the updates since the last one; starts a new window (``new_window``)."""
        row = self.window.row(self.step, self.updates, new_window)
        row.update({"perf/seconds": self.seconds_before + time.perf_counter() - self.started,
                    "replay/steps": len(self.replay), "train/updates": self.updates})
        return row

    def fill_replay(self, *, steps: int | None = None, episodes: int | None = None) -> None:
        """Act with uniformly random actions (``self.rng``), storing the transitions and updating nothing, until
        ``steps`` env steps or ``episodes`` finished episodes in all: a replay for tools that measure or train parts
        of the agent outside the training loop (benchmarks/). The envs stay open."""
        if (steps is None) == (episodes is None):
            raise ValueError("fill_replay: give exactly one of steps and episodes")
        while (self.step < steps) if steps is not None else (self.episodes < episodes):
            self._env_step(random_actions=True)

    def _env_step(self, random_actions: bool = False) -> list[dict[str, Any]]:
        """Act in all envs (random actions during the prefill or where asked), store the transitions, step. Returns
        the episode rows of episodes that ended."""
        tc, n = self.tc, self.tc.envs
        if random_actions or self.step < tc.prefill:
            if self.discrete:
                action = np.eye(self.action_dim, dtype=np.float32)[self.rng.integers(self.action_dim, size=n)]
            else:
                action = self.rng.uniform(-1, 1, (n, self.action_dim)).astype(np.float32)
        else:
            obs = obs_to_tensors(self.obs, self.device)
            action_t, self.policy_state = self.agent.act(obs, torch.as_tensor(self.is_first, device=self.device),
                                                         self.policy_state)
            action = action_t.cpu().numpy()
        action[self.is_last] = 0.0  # no action follows the last observation
        for i in range(n):
            self.replay.add({**{f"obs/{k}": v[i] for k, v in self.obs.items()}, "action": action[i],
                             "reward": self.reward[i], "is_first": self.is_first[i], "is_last": self.is_last[i],
                             "is_terminal": self.is_terminal[i]}, stream=i)
        obs, reward, terminated, truncated, info = self.vec.step(to_env_actions(action, self.action_space))
        self.step += self.step_size
        # Autoreset (NEXT_STEP): envs whose last step was the previous one were reset by this call.
        self.is_first, self.obs = self.is_last.copy(), obs
        self.reward = np.where(self.is_first, 0.0, reward).astype(np.float32)
        self.is_last = (terminated | truncated) & ~self.is_first
        self.is_terminal = terminated & ~self.is_first
        if tc.life_loss_terminal and "life_loss" in info:  # the episode goes on; only the continue target changes
            self.is_terminal |= np.asarray(info["life_loss"], bool) & info.get("_life_loss", True) & ~self.is_first
        self.episode_return = np.where(self.is_first, 0.0, self.episode_return + self.reward)
        self.episode_length = np.where(self.is_first, 0, self.episode_length + 1)
        rows = []
        for i in np.flatnonzero(self.is_last):
            self.episodes += 1
            row = {"episode/return": float(self.episode_return[i]), "episode/length": int(self.episode_length[i])}
            if "success" in info and info.get("_success", np.ones(n, bool))[i]:
                row["episode/success"] = float(info["success"][i])
            for key in (k for k in info if k.startswith("bsuite/")):  # bsuite's scoring counters (bsuite_score.py)
                if info.get(f"_{key}", np.ones(n, bool))[i]:
                    row[f"episode/{key}"] = float(info[key][i])
            rows.append(row)
        return rows

    def sample_batch(self, count: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """One update's data from replay: the (B, T) batch (with its episode prefix under train.context=episode)
        and, with agent.imagination.starts=replay, the imagination contexts (None otherwise). ``count=False``: the
        dfs sampler does not count these draws (an actor-critic warm-up: the world model does not train on them)."""
        tc, imagination = self.tc, self.cfg.agent.imagination
        context = tc.context_length if tc.context == "episode" else 0
        batch = batch_to_tensors(self.replay.sample(tc.batch_size, tc.sequence_length, context, count), self.device)
        contexts = None
        if imagination.starts == "replay":  # Drama: contexts drawn apart from the batch (dfs: the m_i rule)
            n = imagination.number(tc.batch_size, tc.sequence_length)
            contexts = batch_to_tensors(self.replay.sample_contexts(n, imagination.context, context, count),
                                        self.device)
        return batch, contexts

    def _update(self) -> tuple[dict[str, float], dict[str, float]]:
        """One update, then the actor-critic warm-ups it makes due. Returns the update's metrics and a warmup/ row
        (the warm-ups' mean metrics and their number; empty without warm-ups)."""
        batch, contexts = self.sample_batch()
        metrics = self.agent.update(batch, contexts)
        self.updates += 1
        self._check_finite(metrics, batch)
        warmups = []
        for _ in range(self.agent.behavior_warmups_due()):  # a reset actor-critic learns before it acts again
            data = self.sample_batch(count=False)
            warmups.append({k: float(v) for k, v in self.agent.warm_up_behavior(*data).items()})
            self._check_finite({f"warm-up {k}": v for k, v in warmups[-1].items()}, data[0])
        if not warmups:
            return metrics, {}
        row = {f"warmup/{k}": sum(w[k] for w in warmups) / len(warmups) for k in warmups[0]}
        return metrics, row | {"warmup/updates": len(warmups)}

    def _check_finite(self, metrics: dict[str, float], batch: dict[str, Any]) -> None:
        """Stop the run at a non-finite loss or gradient norm, naming it (and saving the batch and weights)."""
        if bad := [k for k, v in metrics.items() if not np.isfinite(v)]:
            where = ""
            if self.logdir:  # the batch, the weights after the update and the metrics (the last checkpoint has before)
                path = os.path.join(self.state_dir(), "debug", f"update-{self.updates}.pt")  # one per rank
                os.makedirs(os.path.dirname(path), exist_ok=True)
                torch.save({"batch": batch, "agent": self.agent.state_dict(), "metrics": metrics}, path + ".tmp")
                os.replace(path + ".tmp", path)
                where = f"; batch and weights saved to {path}"
            raise FloatingPointError(f"non-finite {', '.join(sorted(bad))} at update {self.updates} (env step "
                                     f"{self.step}){where}")

    def _solved(self, result: dict[str, Any]) -> bool:
        """Whether an evaluation meets train.stop_at (on rank 0, whose result is broadcast)."""
        value = result.get(f"eval/{self.tc.stop_metric}")
        return value is not None and value >= self.tc.stop_at

    def _evaluate(self, logger: Logger | None = None, final: bool = False) -> dict[str, Any]:
        if self.tc.eval_episodes <= 0:
            return {}
        if logger is not None:  # an evaluation can take minutes (long episodes): say so
            logger.print(f"ssmworld: {'final ' if final else ''}evaluation at step {self.step}: "
                         f"{self.tc.eval_episodes} episodes of the greedy policy")
        result = evaluate(self.agent, self.tc.env, self.tc.eval_episodes, seed=self.tc.seed + 10_000 + self.step,
                          env_options=self.tc.env_options)
        return {f"eval/{k}": v for k, v in result.items()}

    # ---- checkpoints (run_state.py) --------------------------------------------------------------------------------
    def save_checkpoint(self, acting: bool = False) -> bool:
        """Write a checkpoint; ``acting``: with the episodes in progress where the envs allow (returns whether)."""
        return run_state.save(self, acting)


def train(cfg: Config, logdir: str | None = None, resume: bool = False, quiet: bool = True) -> dict[str, Any]:
    """Train one run; returns the summary (steps, updates, episodes, seconds, final evaluation)."""
    return Trainer(cfg, logdir, resume, quiet).run()
