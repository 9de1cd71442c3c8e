"""A well-mixed SEIR in populace: each step a susceptible agent is exposed with probability
1 - exp(-beta I / N), an exposed one becomes infectious with probability sigma, an infectious
one recovers with probability gamma (all from the state at the start of the step)."""

import dataclasses

from populace.engine import Model, Simulation, param
from populace.epi.contact import well_mixed
from populace.epi.disease import Disease, InfectionState, ProgressionParams
from populace.epi.observation import compartment


@dataclasses.dataclass(frozen=True)
class SEIRParams(ProgressionParams):  # sigma and gamma, plus:
    beta: float = param(0.5, low=0, unit="1/step", doc="transmission rate")


def seir(n=1000, infected=10, **params):
    disease = Disease(latent=True)

    def init(params, ctx):
        return InfectionState(**disease.initial(ctx, n, count=infected))

    def step(state, params, ctx):
        hazard = well_mixed(disease.share(state, "I"), params.beta)
        return state.replace(**disease.advance(state, hazard, params, ctx))

    metrics = {c: compartment(disease, c) for c in disease.compartments}
    return Model("seir", SEIRParams(**params), init, (step,), metrics, agents=n)


if __name__ == "__main__":
    result = Simulation(seir(), members=8, seed=0).run(200)
    print("attack rate, mean of 8 runs:", result.series("R")[:, -1].mean().item() / 1000)
