"""What every ensemble of a package shares: members of one architecture trained alike from different
seeds, built from and written to a package's JSON config like a single network.

On a few hundred patients a single network's ranking depends on its seed, its lucky epoch and even
float rounding nearly as much as on the patients; averaging independently trained networks (a deep
ensemble, Lakshminarayanan et al., NeurIPS 2017) removes much of that variance, the part that does
not carry over to another cohort or another centre's acquisitions. How the members' outputs are
averaged is each model's own (:class:`~.herovision_net.HEROVisionEnsemble`,
:class:`~.ivim_net.IVIMEnsemble`).
"""

from __future__ import annotations

from torch import nn


class NetworkEnsemble(nn.Module):
    """``members`` networks of class :attr:`member_class`, all built from one ``member`` config."""

    member_class: type[nn.Module]

    def __init__(self, members: int = 2, member: dict | None = None):
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least two members, got {members}")
        self.members = nn.ModuleList(self.member_class(**(member or {})) for _ in range(members))

    @classmethod
    def of(cls, networks: list[nn.Module]):
        """The ensemble of trained networks (one architecture)."""
        configs = [network.to_config() for network in networks]
        if any(config != configs[0] for config in configs):
            raise ValueError("ensemble members must share one architecture")
        ensemble = cls(len(networks), configs[0])
        ensemble.members = nn.ModuleList(networks)
        return ensemble

    def to_config(self) -> dict:
        return {"members": len(self.members), "member": self.members[0].to_config()}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)
