"""The tiny run the command-line tests share: the shipped `protein` spec shrunk
to one Greedy cell of two rounds of 8 queries (seconds, not minutes), on one worker."""

TINY = [
    "--set", "rounds=[8,8]", "--set", "seeds=[0]", "--set", "methods=[greedy]",
    "--set", "eval_samples=8", "--set", "auc_freq=4",
    "--set", "config.greedy.finetune_steps=1", "--set", "config.greedy.batch_size=4",
    "--set", "config.greedy.reward_model.steps=5",
    "--workers", "1",
]  # fmt: skip
