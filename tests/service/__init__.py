"""Service tests (a package, so its conftest does not shadow the other suites' conftest)."""
