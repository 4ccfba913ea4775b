"""The digital phantom cohort of PHANTOM.md: synthetic patients with known truth."""

from .generate import PhantomCase, generate_case, generate_cohort, write_case
from .profiles import PROFILE_A, PROFILES, Profile

__all__ = ["PhantomCase", "generate_case", "generate_cohort", "write_case", "PROFILE_A", "PROFILES", "Profile"]
