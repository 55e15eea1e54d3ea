"""Everything one emulator instance holds: the indexed org, config, limiter, faults, exports, URL signer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import CloseEmulatorConfig
from .exports import ExportRegistry
from .faults import FaultInjector
from .ratelimit import RateLimiter
from .signing import UrlSigner
from .store import OrgStore
from .uploads import UploadRegistry

if TYPE_CHECKING:
    from emulators.orgdata import CloseOrg


@dataclass
class EmulatorState:
    store: OrgStore
    config: CloseEmulatorConfig
    limiter: RateLimiter
    faults: FaultInjector
    signer: UrlSigner
    exports: ExportRegistry = field(default_factory=ExportRegistry)
    uploads: UploadRegistry = field(default_factory=UploadRegistry)  # Files API slots (uploads.py)
    api_keys: frozenset[str] = frozenset()

    def reload(self, org: CloseOrg) -> None:
        """Serve a changed org from now on (e.g. a delta-cutover test edits records between two runs).

        The new index is built first and swapped in one assignment, so in-flight requests see either the old
        or the new org, never a mix. Rate-limit windows, fault state, exports and upload slots are kept.
        """
        store = OrgStore(org)
        self.api_keys = frozenset([org.api_key, *self.config.extra_api_keys])
        self.store = store

    @classmethod
    def build(cls, org: CloseOrg, config: CloseEmulatorConfig) -> EmulatorState:
        config.validate()
        return cls(
            store=OrgStore(org),
            config=config,
            limiter=RateLimiter(config.rate_limit, config.clock),
            faults=FaultInjector(config.faults),
            signer=UrlSigner(config.download_url_lifetime, config.clock),
            api_keys=frozenset([org.api_key, *config.extra_api_keys]),
        )
