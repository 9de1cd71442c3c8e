"""A well-mixed SEIR in Mesa 3: each step a susceptible agent is exposed with probability
1 - exp(-beta I / N), an exposed one becomes infectious with probability sigma, an infectious
one recovers with probability gamma (all from the state at the start of the step)."""

import math

import mesa


class Person(mesa.Agent):
    def __init__(self, model, health):
        super().__init__(model)
        self.health = health

    def step(self):
        m = self.model
        if self.health == "S" and self.random.random() < m.p_infect:
            self.health = "E"
        elif self.health == "E" and self.random.random() < m.sigma:
            self.health = "I"
        elif self.health == "I" and self.random.random() < m.gamma:
            self.health = "R"


class SEIR(mesa.Model):
    def __init__(self, n=1000, infected=10, beta=0.5, sigma=0.3, gamma=0.2, seed=None):
        super().__init__(seed=seed)
        self.beta, self.sigma, self.gamma = beta, sigma, gamma
        Person.create_agents(self, n, ["I"] * infected + ["S"] * (n - infected))
        counts = {c: lambda m, c=c: m.count(c) for c in "SEIR"}
        self.datacollector = mesa.DataCollector(model_reporters=counts)

    def count(self, health):
        return sum(a.health == health for a in self.agents)

    def step(self):
        self.p_infect = 1 - math.exp(-self.beta * self.count("I") / len(self.agents))
        self.agents.do("step")
        self.datacollector.collect(self)


if __name__ == "__main__":
    finals = []
    for seed in range(8):
        model = SEIR(seed=seed)
        for _ in range(200):
            model.step()
        finals.append(model.count("R") / 1000)
    print("attack rate, mean of 8 runs:", sum(finals) / len(finals))
