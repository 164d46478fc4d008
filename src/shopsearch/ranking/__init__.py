"""Ranking: training samples and features, multi-task ranking models, position bias.

* :mod:`.base` — the contract (FeatureSpec, RankingBatch, TaskOutputs, RankingModel);
* :mod:`.samples` / :mod:`.features` — impressions → leakage-free feature rows → tensors;
* :mod:`.position_bias` — PAL-style bias tower, EM propensities and IPW;
* :mod:`.models` — baselines (DNN, ESMM, MMoE, PLE) and the papers' models; :mod:`.registry`;
* :mod:`.lightgbm_ranker` — LambdaMART baseline;
* :mod:`.train` / :mod:`.ranker` — training loop, trained ranker save / load;
* :mod:`.value` — task outputs → one ranking value;
* :mod:`.serving` / :mod:`.stage` / :mod:`.publish` — the engine's ranking stage and bundles.
"""
