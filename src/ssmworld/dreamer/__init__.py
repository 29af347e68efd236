"""The algorithm: R2I / DreamerV3 / Drama over any sequence core (no training loop, no files, no processes).

world_model.py  encoder, posterior, sequence core, prior, heads, loss; imagination in step mode
imagination.py  where imagination starts (posterior states, or a context from the batch or from replay)
behavior.py     lambda returns, return normalisation, the actor-critic losses
agent.py        act() (carries the core state) and update() (one world-model and one actor-critic step)
optim.py        LaProp (Drama's optimiser)
replay.py       chunked storage per env stream and the samplers (uniform, recency, Drama's DFS)
"""
