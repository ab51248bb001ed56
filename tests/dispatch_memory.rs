//! The dispatch suite on the memory store.

mod dispatch;

use dispatch::Backend;

mod support;

async fn memory(_test: &'static str) -> Option<(Backend, support::Finish)> {
    Some((Backend::memory(), Box::pin(async {})))
}

dispatch_suite!(memory;
    partitioned_instances_share_the_work_and_keep_stream_order,
    a_dead_instance_partitions_are_taken_over_after_its_lease,
    changing_the_partition_count_is_a_rebuild,
    the_attribute_sets_the_partition_count,
    the_consumer_store_lists_forgets_and_resets,
    an_expired_membership_renewed_meanwhile_is_not_forgotten,
    a_retry_after_an_erasure_sees_the_value_erased,
    a_listener_sees_each_event_once_with_personal_data_decrypted,
    rebuilding_an_aggregate_never_triggers_a_consumer,
    a_process_manager_command_carries_correlation_and_causation,
    request_metadata_reaches_consumers_and_carries_on,
    a_failing_consumer_is_retried_then_parked_while_others_run,
    projections_rebuild_to_the_same_read_model_and_hold_no_erased_data,
    inline_mode_dispatches_before_execute_returns,
    worker_mode_wakes_on_commit,
    only_one_instance_runs_a_consumer_at_a_time,
    a_crash_before_the_checkpoint_redelivers_and_once_absorbs_it,
    an_erasure_reaches_the_consumers_once,
    a_read_model_holds_references_and_reads_erasures,
);
