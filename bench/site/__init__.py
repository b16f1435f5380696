"""The static leaderboard site: ``build_site(Store(db), "leaderboard/site")``."""

from bench.site.build import SiteResult, build_site

__all__ = ["SiteResult", "build_site"]
