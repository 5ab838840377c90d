-- capplan's DuckDB schema. Applied at every connection; every statement is idempotent.
-- Units: cpu in cores, memory and storage in bytes, pods in pods, money in USD.
-- A run's outputs are written in one transaction together with status 'succeeded';
-- readers use only rows whose run succeeded (view completed_runs).

CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,               -- monthly | what-if | ingest
    status VARCHAR NOT NULL,             -- running | succeeded | failed
    as_of DATE NOT NULL,
    month VARCHAR NOT NULL,              -- yyyy-mm the plan is for
    config_json VARCHAR,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    timings_json VARCHAR,
    summary_json VARCHAR,
    error VARCHAR,
    flow_run_id VARCHAR,
    baseline_run_id VARCHAR,             -- what-if runs: the plan they compare with
    scenario_json VARCHAR
);

CREATE OR REPLACE VIEW completed_runs AS
    SELECT * FROM runs WHERE status = 'succeeded';

-- One row per series ever seen; series_id is stable across runs.
CREATE TABLE IF NOT EXISTS series (
    series_id VARCHAR PRIMARY KEY,
    cluster VARCHAR, pool VARCHAR, node VARCHAR, namespace VARCHAR,
    resource VARCHAR, kind VARCHAR,
    level VARCHAR,                       -- node | pool | namespace
    unit VARCHAR, source VARCHAR,
    first_seen TIMESTAMPTZ
);

-- avg: the mean over each step (or a raw sample); max: the peak within each step.
ALTER TABLE series ADD COLUMN IF NOT EXISTS agg VARCHAR DEFAULT 'avg';

-- Samples in long format. No primary key (it makes bulk loads ~14x slower):
-- a re-pulled window is replaced by DELETE + INSERT in one transaction.
CREATE TABLE IF NOT EXISTS samples (series_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, value DOUBLE NOT NULL);

-- Which windows of which query are stored, so a re-run pulls only what is missing.
CREATE TABLE IF NOT EXISTS ingest_windows (
    source VARCHAR, query_name VARCHAR, cluster VARCHAR,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, step_s INTEGER,
    rows BIGINT, run_id VARCHAR, completed_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS inventory (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, zone VARCHAR, node VARCHAR,
    instance_type VARCHAR, cpu_cores DOUBLE, memory_bytes DOUBLE, pods DOUBLE, storage_bytes DOUBLE
);

CREATE TABLE IF NOT EXISTS storage_pools (run_id VARCHAR, cluster VARCHAR, pool VARCHAR, capacity DOUBLE);

CREATE TABLE IF NOT EXISTS events (
    run_id VARCHAR, name VARCHAR, kind VARCHAR, start_date DATE, end_date DATE, uplift_pct DOUBLE,
    recurring VARCHAR, scope_json VARCHAR, reason VARCHAR
);

CREATE TABLE IF NOT EXISTS data_quality (
    run_id VARCHAR, series_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR, kind VARCHAR,
    coverage_pct DOUBLE, gaps INTEGER, longest_gap_steps INTEGER, duplicates INTEGER,
    counter_resets INTEGER, last_ts TIMESTAMPTZ, stale BOOLEAN, new_series BOOLEAN, note VARCHAR
);

CREATE TABLE IF NOT EXISTS forecasts (
    run_id VARCHAR, series_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR, kind VARCHAR,
    resolution VARCHAR,                  -- 1d-peak (daily maximum)
    ts TIMESTAMPTZ, yhat DOUBLE, yhat_lower DOUBLE, yhat_upper DOUBLE, yhat_baseline DOUBLE, model VARCHAR
);

CREATE TABLE IF NOT EXISTS forecast_overlays (
    run_id VARCHAR, series_id VARCHAR, ts TIMESTAMPTZ, event VARCHAR, contribution DOUBLE
);

CREATE TABLE IF NOT EXISTS backtest_scores (
    run_id VARCHAR, series_id VARCHAR, model VARCHAR, mae DOUBLE, mase DOUBLE, rel_mase DOUBLE,
    bias_pct DOUBLE, coverage_80 DOUBLE, coverage_95 DOUBLE, chosen BOOLEAN, origins INTEGER,
    horizon_steps INTEGER
);

CREATE TABLE IF NOT EXISTS capacity (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, resource VARCHAR, nodes INTEGER,
    units INTEGER, failure_unit VARCHAR, redundancy_k INTEGER, capacity DOUBLE, lost DOUBLE,
    usable DOUBLE, too_small BOOLEAN
);

CREATE TABLE IF NOT EXISTS headroom (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, resource VARCHAR, kind VARCHAR,
    ts TIMESTAMPTZ, demand DOUBLE, usable DOUBLE, utilisation_pct DOUBLE, threshold_pct DOUBLE
);

CREATE TABLE IF NOT EXISTS decisions (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, resource VARCHAR, binding_kind VARCHAR,
    utilisation_now_pct DOUBLE, peak_utilisation_pct DOUBLE, peak_date DATE, threshold_pct DOUBLE,
    trigger_date DATE, lead_time_days INTEGER, order_by_date DATE, late BOOLEAN,
    days_of_headroom INTEGER, status VARCHAR
);

CREATE TABLE IF NOT EXISTS plans (
    run_id VARCHAR, order_by_date DATE, needed_by_date DATE, late BOOLEAN, cluster VARCHAR, pool VARCHAR,
    tier VARCHAR, action VARCHAR, quantity INTEGER, instance_type VARCHAR, storage_gib DOUBLE,
    storage_type VARCHAR, spot_ratio_pct DOUBLE, reserved_ratio_pct DOUBLE, monthly_cost_usd DOUBLE,
    binding_resource VARCHAR, reason VARCHAR
);

CREATE TABLE IF NOT EXISTS fleet_costs (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, instance_type VARCHAR, nodes INTEGER,
    monthly_cost_usd DOUBLE
);

CREATE TABLE IF NOT EXISTS plan_diffs (
    run_id VARCHAR, previous_run_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR,
    trigger_before DATE, trigger_after DATE, shift_days INTEGER, nodes_before INTEGER,
    nodes_after INTEGER, cost_before_usd DOUBLE, cost_after_usd DOUBLE, why VARCHAR
);

CREATE TABLE IF NOT EXISTS notifications (
    run_id VARCHAR, sent_at TIMESTAMPTZ, recipients VARCHAR, subject VARCHAR, status VARCHAR, error VARCHAR
);

-- Series that could not be forecast (severity 'error') and what the forecaster repaired or
-- fell back on ('note'). A pool with an error is never dropped: it is planned as 'review'.
CREATE TABLE IF NOT EXISTS forecast_notes (
    run_id VARCHAR, series_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR, kind VARCHAR,
    severity VARCHAR, message VARCHAR
);

-- Why a decision needs a human (no forecast, no history): red in every output.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS review_reason VARCHAR;

-- on-demand | spot (spot nodes of one type may fail together: policies.spot_failure)
ALTER TABLE inventory ADD COLUMN IF NOT EXISTS capacity_type VARCHAR DEFAULT 'on-demand';

-- Forecast quantiles (one column per forecasting.frames.QUANTILE_COLUMNS) and how much the days'-- errors move together (forecasting.risk): what the risk of being late is computed from.
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q010 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q025 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q050 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q100 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q200 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q250 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q300 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q400 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q500 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q600 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q700 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q750 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q800 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q900 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q950 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q975 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS q990 DOUBLE;
ALTER TABLE forecasts ADD COLUMN IF NOT EXISTS dependence DOUBLE;
-- what each event multiplied the forecast by (divide by it: the forecast without the event)
ALTER TABLE forecast_overlays ADD COLUMN IF NOT EXISTS factor DOUBLE;
-- The numbers of docs/ARCHITECTURE.md ("The numbers"), per pool and resource.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS capacity DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS usable DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS demand_bound VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS measured_peak_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS measured_usage_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS measured_requests_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS forecast_peak_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS lead_time_source VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS risk_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS horizon_risk_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS earliest_arrival_date DATE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS arrival_peak_pct DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS arrival_over_usable BOOLEAN;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS arrival_over_raw BOOLEAN;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS required_usable DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS summary VARCHAR;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS reserved_term_years INTEGER;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS reserved_nodes INTEGER;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS next_12m_cost_usd DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS temporary BOOLEAN;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS rent_start DATE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS rent_end DATE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS window_cost_usd DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS buy_12m_cost_usd DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS binds_on VARCHAR;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS measured_peak_pct DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS forecast_peak_pct DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS risk_pct DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS lead_time_days INTEGER;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS events VARCHAR;
-- storage is part of today's fleet cost
ALTER TABLE fleet_costs ADD COLUMN IF NOT EXISTS storage_type VARCHAR;
ALTER TABLE fleet_costs ADD COLUMN IF NOT EXISTS storage_gib DOUBLE;

-- What each event does to each trigger (forecasting.reasons.event_effects): shift_days > 0 means the
-- event brings the trigger that many days earlier; trigger_without NULL: no trigger without it.
CREATE TABLE IF NOT EXISTS event_effects (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR, event VARCHAR, event_days INTEGER,
    trigger_without DATE, shift_days INTEGER
);
ALTER TABLE headroom ADD COLUMN IF NOT EXISTS capacity DOUBLE;
ALTER TABLE headroom ADD COLUMN IF NOT EXISTS p_cross DOUBLE;
ALTER TABLE headroom ADD COLUMN IF NOT EXISTS required_usable DOUBLE;

-- How past plans did (forecasting.trackrecord): one row per earlier run still inside its
-- horizon and pool series: its forecast against what happened since, and for the demand
-- kind that bound, the trigger it predicted against the crossing that came (or not).
CREATE TABLE IF NOT EXISTS track_record (
    run_id VARCHAR, past_run_id VARCHAR, past_as_of DATE, cluster VARCHAR, pool VARCHAR, resource VARCHAR,
    kind VARCHAR, days INTEGER, mae DOUBLE, mase DOUBLE, coverage_80 DOUBLE, coverage_95 DOUBLE, bias_pct DOUBLE,
    predicted_trigger DATE, actual_crossing DATE, status VARCHAR, late BOOLEAN, error_days INTEGER
);

-- Daily peaks in the history far above their local baseline that no declared event
-- explains (forecasting.spikes), and the trigger the plan would have without them.
CREATE TABLE IF NOT EXISTS unexplained_peaks (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, resource VARCHAR, kind VARCHAR, start_date DATE, end_date DATE,
    excess_pct DOUBLE, trigger_date DATE, trigger_without DATE
);

-- Autoscaled pools (docs/AUTOSCALING.md). Limits are series of level 'limit' (their history:
-- an operator raises them); provider says what reports them (karpenter, cluster-autoscaler).
ALTER TABLE series ADD COLUMN IF NOT EXISTS provider VARCHAR;
ALTER TABLE capacity ADD COLUMN IF NOT EXISTS pool_kind VARCHAR;
ALTER TABLE capacity ADD COLUMN IF NOT EXISTS binding_limit VARCHAR;
ALTER TABLE capacity ADD COLUMN IF NOT EXISTS node_ceiling DOUBLE;
ALTER TABLE capacity ADD COLUMN IF NOT EXISTS limits_text VARCHAR;
ALTER TABLE capacity ADD COLUMN IF NOT EXISTS unreachable VARCHAR;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS target VARCHAR;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS new_value DOUBLE;
ALTER TABLE plans ADD COLUMN IF NOT EXISTS patch VARCHAR;
-- One row per autoscaled pool with limits: when the capacity it needs crosses them (forecasting.elastic).
CREATE TABLE IF NOT EXISTS limit_runway (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, tier VARCHAR, provisioner VARCHAR, source VARCHAR,
    limits_text VARCHAR, binding_limit VARCHAR, node_ceiling DOUBLE, nodes_today INTEGER, needed_nodes_p50 DOUBLE,
    needed_nodes_risk DOUBLE, binds_on VARCHAR, crossing_p50_date DATE, crossing_date DATE, file_by_date DATE,
    lead_time_days INTEGER, late BOOLEAN, status VARCHAR, risk_pct DOUBLE, new_limits VARCHAR, patch VARCHAR,
    unreachable VARCHAR
);
-- One row per cloud quota (forecasting.quotas) and its daily use as a quantile grid.
CREATE TABLE IF NOT EXISTS quotas (
    run_id VARCHAR, code VARCHAR, name VARCHAR, cloud VARCHAR, account VARCHAR, region VARCHAR, clusters VARCHAR,
    unit VARCHAR, value DOUBLE, used_today DOUBLE, peak_p50 DOUBLE, peak_risk DOUBLE, crossing_p50_date DATE,
    crossing_date DATE, lead_time_days INTEGER, lead_time_note VARCHAR, file_by_date DATE, late BOOLEAN,
    status VARCHAR, new_value DOUBLE, risk_pct DOUBLE, binds_before VARCHAR
);
CREATE TABLE IF NOT EXISTS quota_usage (
    run_id VARCHAR, code VARCHAR, ts TIMESTAMPTZ, q010 DOUBLE, q025 DOUBLE, q050 DOUBLE, q100 DOUBLE, q200 DOUBLE,
    q250 DOUBLE, q300 DOUBLE, q400 DOUBLE, q500 DOUBLE, q600 DOUBLE, q700 DOUBLE, q750 DOUBLE, q800 DOUBLE,
    q900 DOUBLE, q950 DOUBLE, q975 DOUBLE, q990 DOUBLE
);
-- Autoscaled pools' forecast bill per month, and the commitment ladder (existing and recommended).
CREATE TABLE IF NOT EXISTS pool_costs (
    run_id VARCHAR, cluster VARCHAR, pool VARCHAR, month VARCHAR, nodes_p50 DOUBLE, nodes_risk DOUBLE,
    monthly_cost_p50_usd DOUBLE, monthly_cost_risk_usd DOUBLE
);
CREATE TABLE IF NOT EXISTS commitments (
    run_id VARCHAR, kind VARCHAR, name VARCHAR, type VARCHAR, term_years INTEGER, start_date DATE, expiry_date DATE,
    hourly_usd DOUBLE, covers_usd_per_hour DOUBLE, discount_pct DOUBLE, expected_saving_per_month_usd DOUBLE,
    unused_chance_pct DOUBLE, reason VARCHAR
);
-- What each committed window of a Prometheus pull cost the server, from the answers' stats=all
-- (totalQueryableSamples, peakSamples, timings.evalTotalTime): written with the window's
-- samples in one transaction. variant: raw | recorded (the mixins' recorded series);
-- resolution: what Thanos was asked for (max_source_resolution), '' elsewhere.
CREATE TABLE IF NOT EXISTS query_costs (
    source VARCHAR, query_name VARCHAR, query_group VARCHAR, variant VARCHAR, cluster VARCHAR,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, step_s INTEGER, resolution VARCHAR,
    requests INTEGER, samples BIGINT, peak_samples BIGINT, server_s DOUBLE, wall_s DOUBLE, points BIGINT,
    recorded_at TIMESTAMPTZ
);
