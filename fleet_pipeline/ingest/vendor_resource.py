"""What every vendor resource shares: live credentials or the embedded sandbox, never a mix.

* Sandbox mode (no vendor credentials at all): the resource starts its vendor's fake server
  in-process on a loopback port for the duration of the step, over the deterministic world, and the
  assets run the same code path as in production — real HTTP, real signatures, real limits.
* Live mode (credentials for at least one vendor): a vendor with credentials talks to its API; a
  vendor without them fails at step start with a clear message, so synthetic rows never reach a
  live warehouse.

* Replay (``fleet-pipeline replay``): no server starts and nothing is sent; the clients are
  built as usual, against an address that cannot resolve, and their answers come from the raw
  archive (``fleet_pipeline.ingest.archiving``). Their token caches and rate-limit ledgers are a
  temporary folder's, so that an archived (redacted) token never reaches the real cache.

Subclasses say how to tell whether credentials are set, how to start their sandbox and how to
build a client.

A vendor with several accounts (``fleet_pipeline.sources.accounts``) has one resource: an asset of
one account works with :meth:`VendorResource.for_account`, the same resource with that account's
connection, whose secrets are read from the environment when the step needs them.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import PrivateAttr

from fleet_pipeline import settings
from fleet_pipeline.ingest.archiving import replay_of
from fleet_pipeline.ingest.http import Backoff, RetryPolicy
from fleet_pipeline.sandbox.world import World
from fleet_pipeline.sources import accounts

T = TypeVar("T")
R = TypeVar("R", bound="VendorResource")
# Fields an account copy keeps from the resource it is made from: the run's, not the account's.
_SHARED_FIELDS = frozenset({"live_mode", "cache_dir", "sandbox_seed", "sandbox_devices", "file_accounts",
                            "retry_attempts", "backoff_base_s"})


class VendorNotConfigured(settings.ConfigError):
    """Live mode, but this vendor has no credentials."""


@dataclass(frozen=True)
class ArchiveEndpoint:
    """Where a replayed client "talks to": a reserved name (RFC 2606) that no resolver answers, so
    a call that escaped the archive could reach nothing; the archive answers instead."""

    base_url: str = "http://archive.invalid"

    def stop(self) -> None:
        """Nothing was started."""


class VendorResource(ConfigurableResource):
    vendor: ClassVar[str] = ""
    # The vendor's name in the registry (its resource key and its section of the accounts file).
    registry_name: ClassVar[str] = ""
    credential_hint: ClassVar[str] = ""

    live_mode: bool = False
    # The vendor's accounts listed in FLEET_ACCOUNTS_FILE (names only: their secrets are read when
    # a step uses one, see for_account).
    file_accounts: list[str] = []
    cache_dir: str = ""
    sandbox_seed: int = 42
    sandbox_devices: int = 200
    # How hard one call tries before the step fails; tests shrink both to stay fast.
    retry_attempts: int = 6
    backoff_base_s: float = 1.0

    _sandbox: Any = PrivateAttr(default=None)
    _memo: dict[str, Any] = PrivateAttr(default_factory=dict)
    _memo_lock: Any = PrivateAttr(default_factory=threading.Lock)
    _replay_cache: Any = PrivateAttr(default=None)
    _accounts: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def common_from_env(cls) -> dict[str, Any]:
        sandbox = settings.sandbox_settings()
        listed = accounts.file_accounts().get(cls.registry_name, [])
        return dict(
            live_mode=not settings.is_sandbox_mode(),
            cache_dir=str(settings.cache_dir()),
            sandbox_seed=sandbox.seed,
            sandbox_devices=sandbox.n_devices,
            file_accounts=[account.name for account in listed],
        )

    @staticmethod
    def secret(env: Mapping[str, str] | None, name: str) -> Any:
        """A secret of ``from_env``: an ``EnvVar`` reference read from the process environment (so
        the UI never shows it), or its value in an account's environment (``for_account``)."""
        return EnvVar(name) if env is None else env[name]

    def for_account(self: R, account: str) -> R:
        """This resource connected to ``account``: itself for the ``default`` account, else a copy
        with the connection the accounts file gives it (same limits and sandbox settings)."""
        if account == accounts.DEFAULT_ACCOUNT:
            return self
        with self._memo_lock:
            if account not in self._accounts:
                from fleet_pipeline.sources.registry import BY_NAME

                configured = type(self).from_env(accounts.account_env(BY_NAME[self.registry_name], account))
                shared = {name: getattr(self, name) for name in type(self).model_fields}
                own = {name: getattr(configured, name) for name in configured.model_fields_set
                       if name not in _SHARED_FIELDS}
                copy = type(self)(**{**shared, **own})
                # A replay run's token cache (a temporary folder) is the account's too: an archived,
                # redacted token must not reach the real cache through an account's client.
                copy._replay_cache = self._replay_cache
                self._accounts[account] = copy
            return self._accounts[account]

    @classmethod
    def from_env(cls: type[R], env: Mapping[str, str] | None = None) -> R:
        """The resource configured from the environment (``env``: an account's, see for_account)."""
        raise NotImplementedError

    @property
    def has_credentials(self) -> bool:
        raise NotImplementedError

    def make_sandbox(self, world: World) -> Any:
        """A bound, not yet started sandbox server of this vendor over ``world``."""
        raise NotImplementedError

    @property
    def is_sandbox(self) -> bool:
        return not self.has_credentials

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = getattr(context, "run", None)
        if run is not None and replay_of(run.tags):
            self._replay_cache = tempfile.TemporaryDirectory(prefix=f"fleet-replay-{self.vendor.lower()}-")
            if not self.has_credentials:
                self._sandbox = ArchiveEndpoint()
            return
        if self.has_credentials or self.file_accounts:
            # Live: the default account's connection, or only accounts of the file (for_account).
            return
        if self.live_mode:
            raise VendorNotConfigured(
                f"{self.vendor} is not configured ({self.credential_hint}). Other vendors have "
                "credentials, so the pipeline runs in live mode and will not fall back to the sandbox."
            )
        self._sandbox = self.make_sandbox(World(seed=self.sandbox_seed, n_devices=self.sandbox_devices))
        self._sandbox.start()
        if context.log:
            context.log.info(
                f"{self.vendor}: no credentials configured, using the embedded sandbox at "
                f"{self._sandbox.base_url} ({self.sandbox_devices} devices, seed {self.sandbox_seed})"
            )

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._replay_cache is not None:
            self._replay_cache.cleanup()
            self._replay_cache = None
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            raise RuntimeError(f"{self.vendor} sandbox is not running: the resource is used outside a run")
        return self._sandbox

    @property
    def cache_path(self) -> Path:
        if self._replay_cache is not None:
            return Path(self._replay_cache.name)
        return Path(self.cache_dir) if self.cache_dir else settings.cache_dir()

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.retry_attempts, backoff=Backoff(base_s=self.backoff_base_s))

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute once per step and share between the step's assets (e.g. the device inventory)."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]
