//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): what
//! `kafka-configs.sh --entity-type users` and the admin clients send to list, set and delete
//! SCRAM credentials, answered as Kafka's controller answers them. A user may be named once
//! per request; each user's change is applied or refused whole.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::broker::Broker;
use crate::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

pub(crate) async fn describe(
    broker: &Broker,
    request: DescribeUserScramCredentialsRequest,
    _version: i16,
) -> DescribeUserScramCredentialsResponse {
    let users = match broker.credentials.users().await {
        Ok(users) => users,
        Err(error) => {
            let code = error.response_error();
            return DescribeUserScramCredentialsResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&error.to_string())));
        }
    };
    let infos = |mechanisms: &Vec<(ScramMechanism, i32)>| {
        mechanisms
            .iter()
            .map(|(mechanism, iterations)| {
                CredentialInfo::default()
                    .with_mechanism(mechanism.code())
                    .with_iterations(*iterations)
            })
            .collect()
    };
    let found = |user: &str, mechanisms| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_credential_infos(infos(mechanisms))
    };
    let failed = |user: &str, error: ResponseError, message: String| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    let results = match request.users.filter(|asked| !asked.is_empty()) {
        // No user named: every user.
        None => users.iter().map(|(user, m)| found(user, m)).collect(),
        Some(asked) => {
            let mut times: BTreeMap<&str, usize> = BTreeMap::new();
            for user in &asked {
                *times.entry(user.name.as_str()).or_default() += 1;
            }
            times
                .into_iter()
                .map(|(user, times)| match users.get(user) {
                    _ if times > 1 => failed(
                        user,
                        ResponseError::DuplicateResource,
                        format!("Cannot describe SCRAM credentials for the same user twice in a single request: {user}"),
                    ),
                    Some(mechanisms) => found(user, mechanisms),
                    None => failed(
                        user,
                        ResponseError::ResourceNotFound,
                        format!("Attempt to describe a user credential that does not exist: {user}"),
                    ),
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

/// One user's change.
enum Change {
    Delete(ScramMechanism),
    Upsert(ScramMechanism, ScramCredential),
}

pub(crate) async fn alter(
    broker: &Broker,
    request: AlterUserScramCredentialsRequest,
    _version: i16,
) -> AlterUserScramCredentialsResponse {
    let mut changes: BTreeMap<String, Result<Change, (ResponseError, String)>> = BTreeMap::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut add = |user: &str, change: Result<Change, (ResponseError, String)>| {
        if refused.contains(user) {
            return;
        }
        let change = match changes.remove(user) {
            Some(_) => Err((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".to_string(),
            )),
            None => change,
        };
        if change.is_err() {
            refused.insert(user.to_string());
        }
        changes.insert(user.to_string(), change);
    };
    for deletion in &request.deletions {
        let user = deletion.name.as_str();
        add(user, check(user, deletion.mechanism).map(Change::Delete));
    }
    for upsertion in &request.upsertions {
        let user = upsertion.name.as_str();
        let change = check(user, upsertion.mechanism).and_then(|mechanism| {
            if upsertion.iterations < MIN_ITERATIONS {
                return Err(unacceptable("Too few iterations"));
            }
            if upsertion.iterations > MAX_ITERATIONS {
                return Err(unacceptable("Too many iterations"));
            }
            let credential = ScramCredential::from_salted_password(
                mechanism,
                &upsertion.salt,
                &upsertion.salted_password,
                upsertion.iterations,
            );
            Ok(Change::Upsert(mechanism, credential))
        });
        add(user, change);
    }
    let mut results = Vec::with_capacity(changes.len());
    for (user, change) in changes {
        let outcome = match change {
            Err(refusal) => Err(refusal),
            Ok(Change::Delete(mechanism)) => {
                match broker.credentials.delete(&user, mechanism).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err((
                        ResponseError::ResourceNotFound,
                        "Attempt to delete a user credential that does not exist".to_string(),
                    )),
                    Err(error) => Err((error.response_error(), error.to_string())),
                }
            }
            Ok(Change::Upsert(mechanism, credential)) => {
                match broker.credentials.put(&user, mechanism, credential).await {
                    Ok(()) => Ok(()),
                    Err(error) => Err((error.response_error(), error.to_string())),
                }
            }
        };
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(user, "SCRAM credential changed");
                result
            }
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&message))),
        });
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn unacceptable(message: &str) -> (ResponseError, String) {
    (ResponseError::UnacceptableCredential, message.to_string())
}

/// The user name must not be empty and the mechanism must be known.
fn check(user: &str, mechanism: i8) -> Result<ScramMechanism, (ResponseError, String)> {
    if user.is_empty() {
        return Err(unacceptable("Username must not be empty"));
    }
    ScramMechanism::from_code(mechanism).ok_or((
        ResponseError::UnsupportedSaslMechanism,
        "Unknown SCRAM mechanism".to_string(),
    ))
}
