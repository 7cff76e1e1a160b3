//! Kafka ingest and publishing status on [`Client`]: asked of the leader
//! (it runs the ingester and the publisher; a follower's view has stored
//! offsets but no watermarks), following `NOT_LEADER` hints.

use tally_proto::v1::kafka_client::KafkaClient;
use tally_proto::v1::{
    IngestFailure, IngestStatusRequest, IngestStatusResponse, ListIngestFailuresRequest,
};
use tonic::transport::Channel;

use crate::client::{Client, MAX_MESSAGE_BYTES, with_timeout};
use crate::error::ClientError;
use crate::retry::{CallFailure, Policy, Route};

fn kafka_client(channel: Channel) -> KafkaClient<Channel> {
    KafkaClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn leader_read() -> Policy {
    Policy {
        route: Route::Leader { remember: false },
        cap_attempts: true,
        write: false,
        observe: false,
    }
}

impl Client {
    /// Per partition: stored offset, broker high watermark, lag, state and
    /// last error; and the publisher's outbox and position.
    pub async fn ingest_status(&self) -> Result<IngestStatusResponse, ClientError> {
        self.run(leader_read(), |channel, timeout| async move {
            let response = kafka_client(channel)
                .get_ingest_status(with_timeout(IngestStatusRequest {}, timeout))
                .await?;
            Ok(response.into_inner())
        })
        .await
        .map_err(CallFailure::into_client_error)
    }

    /// The failed records kept for one partition, oldest first, from
    /// `from_offset`, at most `limit` (0: 100; at most 1000).
    pub async fn ingest_failures(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        limit: u32,
    ) -> Result<Vec<IngestFailure>, ClientError> {
        let request = ListIngestFailuresRequest {
            topic: topic.to_string(),
            partition,
            from_offset,
            limit,
        };
        self.run(leader_read(), |channel, timeout| {
            let request = request.clone();
            async move {
                let response = kafka_client(channel)
                    .list_ingest_failures(with_timeout(request, timeout))
                    .await?;
                Ok(response.into_inner().failures)
            }
        })
        .await
        .map_err(CallFailure::into_client_error)
    }
}
