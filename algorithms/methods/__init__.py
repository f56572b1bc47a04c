"""One module per method, each a (propose, update) pair that `algorithms.loop` runs.

Each module declares its registered names beside its class (`VARIANTS`), and
`algorithms.registry` finds them here: adding a method adds a module and edits
no shared file. What the methods share lives one level up: the loop, the
budgeted oracle, the method base and config (the framework), and the reward
models, SEIKO's optimism and direct fine-tuning (`reward_models`, `optimism`,
`finetune`).
"""
