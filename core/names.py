"""Every tag and metric name ablab writes, as bare constants: one module, no imports, no I/O,
as MLflow keeps its own in `mlflow/utils/mlflow_tags.py`. Readers and writers (the runner,
the report, `ablab list`, the UI, the queue) all spell a name through here, and
tests/test_structure.py checks that no other module writes an "ablab." string.
"""

# ------------------------------------------------------------------------ run tags

ROLE = "ablab.role"  # core.lifecycle.Role: trial, seed, variant, search, study, pretrain
OUTCOME = "ablab.outcome"
END_REASON = "ablab.end_reason"
ERROR = "ablab.error"
TRIAL_HASH = "ablab.trial_hash"
SEED = "ablab.seed"
VARIANT = "ablab.variant"
VARIANT_HASH = "ablab.variant_hash"
BASELINE = "ablab.baseline"
STUDY = "ablab.study"
METRIC = "ablab.metric"
EXPERIMENT = "ablab.experiment"
DETERMINISTIC = "ablab.deterministic"
PACK = "ablab.pack"
TICKET = "ablab.ticket"
WORKER = "ablab.worker"
SLOT = "ablab.slot"
DECISION = "ablab.decision"
DECISION_WHY = "ablab.decision_why"
N_SEEDS = "ablab.n_seeds"
MODEL_URI = "ablab.model_uri"
PRETRAIN_HASH = "ablab.pretrain_hash"
PRETRAIN_SOURCE = "ablab.pretrain_source"
PRETRAINED_FROM = "ablab.pretrained_from"
REPORT_METRIC = "ablab.report_metric"
DEVICE = "ablab.device"
DTYPE_POLICY = "ablab.dtype_policy"
ONEDNN = "ablab.onednn"
CODE = "ablab.code"  # digest of the plugin files that trained it ("builtin": none)
CODE_PREFIX = "ablab.code."  # + a plugin's field: "module:function@file digest"
GIT_COMMIT = "ablab.git_commit"  # the project's commit, "+dirty" with uncommitted changes
DATA_PREFIX = "ablab."  # + a data source's info key (data_cache, data_decoded_here, ...)
QUEUE_NUMBER = "optuna.trial_number"  # the queue trial a run belongs to
PREEMPTIONS = "ablab.preemptions"  # how many times its trial was preempted (and resumed)
WEIGHTS_DIGEST = "ablab.weights_sha256"  # of the final weights: resumed == uninterrupted
OPTUNA_STATE = "optuna.state"
OPTUNA_STUDY = "optuna.study"
OPTUNA_PARAMS = "optuna.params"
OPTUNA_BEST_TRIAL = "optuna.best_trial"
PARENT = "mlflow.parentRunId"


VERDICT_PREFIX = "ablab.verdict_"  # + a metric: a variant's verdict on it (its parent run)
PARETO = "ablab.pareto"  # "true" on the runs of a search trial (or variant) on the Pareto front
FINGERPRINT = "ablab.fingerprint"  # digest of the FP_* tags below but the slot
FP_PREFIX = "ablab.fp."  # + one part of the environment fingerprint:
FP_CPU = "ablab.fp.cpu"  # CPU model
FP_ISA = "ablab.fp.isa"  # the widest vector instruction set: avx512, avx2, ...
FP_GPU = "ablab.fp.gpu"  # GPU name(s), or none
FP_DRIVER = "ablab.fp.driver"  # NVIDIA driver
FP_CUDA = "ablab.fp.cuda"  # CUDA / cuDNN TensorFlow was built with
FP_VERSIONS = "ablab.fp.versions"  # TensorFlow / Keras / NumPy
FP_ONEDNN = "ablab.fp.onednn"  # oneDNN on or off (TF_ENABLE_ONEDNN_OPTS)

# ------------------------------------------------------------------------ other stores

QUEUE_META = "ablab.meta"  # Optuna study attr: the study's StudyMeta
QUEUE_CONFIG = "ablab.config."  # + a config's hash: a study attr holding one config's JSON
QUEUE_ENQUEUING = "ablab.enqueuing_since"  # Optuna study attr while a coordinator enqueues
DOCTOR = "ablab.doctor"  # experiment tag `ablab doctor` writes to prove the store writable

# ------------------------------------------------------------------------ metrics

# Cost metrics of every trial run (core/cost.py); aggregated on the parents like accuracy.
N_PARAMS = "n_params"
N_PARAMS_TRAINABLE = "n_params_trainable"
FLOPS = "flops_per_example"  # forward pass, counted by ablab per layer (multiply-add = 2)
TRAIN_TIME = "train_time_s"
TRAIN_RATE = "train_examples_per_s"
LATENCY = "latency_ms"  # median ms per example at batch 1, after warm-up
THROUGHPUT = "throughput_per_s"  # examples per second at a large batch
PEAK_RSS = "peak_rss_mb"  # the worker process's peak resident memory so far
GPU_PEAK = "gpu_peak_mb"  # peak GPU memory during the trial (GPU only)
MODEL_SIZE = "model_size_mb"  # the saved .keras file
# Exact quantities: shown as values, compared without a test (no seed noise)
EXACT_METRICS = (N_PARAMS, N_PARAMS_TRAINABLE, FLOPS, MODEL_SIZE)
# The cost metrics an ablation compares by default, after its primary metric
DEFAULT_COSTS = (N_PARAMS, FLOPS, LATENCY, TRAIN_TIME)
# Lower is better for these (and for any metric with "loss" in its name or ending in "_s")
LOWER_IS_BETTER = (N_PARAMS, N_PARAMS_TRAINABLE, FLOPS, LATENCY, PEAK_RSS, GPU_PEAK,
                   MODEL_SIZE, TRAIN_TIME)

# A variant's parent run holds <stat>_<metric> for each of these
PARENT_STATS = ("mean", "std", "ci95_low", "ci95_high", "median", "iqm", "iqm_ci95_low",
                "iqm_ci95_high")
COMPARISON_STATS = ("diff", "diff_ci_low", "diff_ci_high", "p_holm", "prob_improvement",
                    "prob_improvement_low", "prob_improvement_high", "effect_size")


def default_direction(metric: str, fallback: str = "maximize") -> str:
    """minimize for losses, times and costs; else `fallback` (the study's direction)."""
    lower = "loss" in metric or metric.endswith("_s") or metric in LOWER_IS_BETTER
    return "minimize" if lower else fallback
