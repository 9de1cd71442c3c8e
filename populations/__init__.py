"""Synthetic populations, geography and contact networks.

Generic synthesis (any region): :func:`fit_joint` (IPF over polars marginals), :func:`integerise`
(totals preserved exactly), :func:`agents_from_table` (codes + codebook); contact layers as CSR:
:func:`clique_layer`, :func:`csr_from_edges`, :func:`chunk_groups`, :func:`form_households`.
New York City: :func:`nyc` (geography needs the ``geo`` extra, imported only when used).
"""

from populace.populations.contacts import chunk_groups, clique_layer, layer_stats
from populace.populations.geography import (
    centroids,
    choropleth,
    haversine_km,
    read_areas,
    sample_points,
    triangulate,
)
from populace.populations.graphs import csr_from_edges
from populace.populations.households import NYC_HOUSEHOLD_SIZE_PROBS, form_households
from populace.populations.nyc import nyc, summary
from populace.populations.population import Population
from populace.populations.synthesis import (
    MarginalError,
    agents_from_table,
    check_marginal,
    fit_joint,
    integerise,
    ipf,
)

__all__ = [
    "NYC_HOUSEHOLD_SIZE_PROBS",
    "MarginalError",
    "Population",
    "agents_from_table",
    "centroids",
    "choropleth",
    "haversine_km",
    "read_areas",
    "sample_points",
    "triangulate",
    "check_marginal",
    "chunk_groups",
    "clique_layer",
    "csr_from_edges",
    "fit_joint",
    "form_households",
    "integerise",
    "ipf",
    "layer_stats",
    "nyc",
    "summary",
]
