"""A leaderboard never ranks a one-seed mean beside a three-seed one: methods with
fewer seeds than the most are ranked apart, below, and the header lists the seeds present."""

from __future__ import annotations

from test_leaderboard import write_cell

from reports.leaderboard import find_cells, header_lines, leaderboard_table


def test_a_method_with_fewer_seeds_is_ranked_apart_below_the_full_ones(tmp_path):
    values = {"greedy": {0: 0.30, 1: 0.50, 2: 0.40}, "ucb": {0: 0.60, 1: 0.62, 2: 0.58}, "rwr": {0: 0.95}}
    for method, seeds in values.items():
        for seed, value in seeds.items():
            write_cell(tmp_path, method, seed, value)
    cells = find_cells(tmp_path)
    table = leaderboard_table(cells)
    assert table["method"].tolist() == ["ucb", "greedy", "rwr"]  # rwr's 0.95 is one seed: not the leader
    assert table["seeds"].tolist() == ["3", "3", "1 of 3, ranked apart"]
    seeds = next(line for line in header_lines(cells) if line.startswith("Seeds"))
    assert seeds == "Seeds: 0, 1, 2 for 2 methods; fewer for 1, ranked apart below them: rwr 0"


def test_the_header_lists_the_seeds_present_when_every_method_ran_them(tmp_path):
    for method in ("greedy", "ucb"):
        for seed in (0, 2):
            write_cell(tmp_path, method, seed, 0.5)
    cells = find_cells(tmp_path)
    assert "Seeds: 0, 2" in header_lines(cells)
    assert leaderboard_table(cells)["seeds"].tolist() == ["2", "2"]


def test_a_run_without_held_out_evaluation_shows_no_evaluation_columns():
    import pandas as pd

    cells = pd.DataFrame({"method": ["a", "b"], "final_value": [None, None], "final_feasible": [None, None],
                          "auc_top10": [0.2, 0.5], "task": "t", "spec": "s", "budget": 8, "seed": 0,
                          "queries_used": 8, "eval_oracle_calls": 0})
    columns = leaderboard_table(cells).columns
    assert not any(c.startswith(("final value", "final feasible", "evaluation oracle")) for c in columns)
    assert any(c.startswith("AUC top-10") for c in columns)


def test_the_leaderboard_shows_the_feasible_rate_and_the_repeats_of_free_proposals_too(tmp_path):
    import pandas as pd

    write_cell(tmp_path, "ucb", 0, 0.5)
    log = next(tmp_path.glob("*/*/ucb/seed0/queries.csv"))
    frame = pd.read_csv(log)
    extra = frame.iloc[[0] * 4].assign(feasible=False, charged=False, call=None)  # four free invalid proposals
    again = frame.iloc[[1] * 2].assign(charged=False, cached=True, call=None)  # two free repeats
    pd.concat([frame, extra, again]).to_csv(log, index=False)
    cells = find_cells(tmp_path)
    expected = (frame["feasible"].sum() + again["feasible"].sum()) / (len(frame) + 6)
    assert cells["proposed_feasible"].iloc[0] == expected < cells["feasible_rate"].iloc[0] + 1e-12
    assert cells["proposed_repeats"].iloc[0] == (frame["cached"].sum() + 2) / (len(frame) + 6) > 0
    table = leaderboard_table(cells)
    assert table["feasible rate of all proposals (free ones too)"].iloc[0] == f"{expected:.3f}"
    assert table["repeats among all proposals"].iloc[0] == f"{cells['proposed_repeats'].iloc[0]:.3f}"
