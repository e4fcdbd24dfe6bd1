//! SCRAM users: list, set a password, delete (DescribeUserScramCredentials and
//! AlterUserScramCredentials, KIP-554), as `kafka-configs.sh --entity-type users` does. The
//! password is salted and hashed here; only the salted password travels.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    AlterUserScramCredentialsRequest, ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::DescribeUserScramCredentialsRequest;
use kafka_protocol::protocol::StrBytes;
use partita_scram::ScramMechanism;
use serde::Serialize;

use crate::client::AdminClient;
use crate::error::{AdminError, Result};

/// A user's credential: its mechanism and iterations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserCredential {
    pub user: String,
    pub mechanism: String,
    pub iterations: i32,
}

/// Every SCRAM user's credentials.
pub async fn list(client: &mut AdminClient) -> Result<Vec<UserCredential>> {
    let (response, _) = client
        .any_broker()
        .call(0, |_| {
            DescribeUserScramCredentialsRequest::default().with_users(None)
        })
        .await?;
    AdminError::check(
        response.error_code,
        response.error_message.as_deref(),
        || "listing SCRAM users".to_string(),
    )?;
    let mut users = Vec::new();
    for result in &response.results {
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("describing user {}", result.user.as_str())
        })?;
        users.extend(result.credential_infos.iter().map(|info| UserCredential {
            user: result.user.to_string(),
            mechanism: ScramMechanism::from_code(info.mechanism).map_or_else(
                || format!("UNKNOWN({})", info.mechanism),
                |m| m.name().to_string(),
            ),
            iterations: info.iterations,
        }));
    }
    Ok(users)
}

/// Sets `user`'s password for `mechanism`.
pub async fn set_password(
    client: &mut AdminClient,
    user: &str,
    mechanism: ScramMechanism,
    password: &str,
    iterations: i32,
) -> Result<()> {
    let salt = partita_scram::random_salt();
    let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
    let upsertion = ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism.code())
        .with_iterations(iterations)
        .with_salt(salt.to_vec().into())
        .with_salted_password(salted.into());
    alter(
        client,
        user,
        AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]),
    )
    .await
}

/// Deletes `user`'s credential for `mechanism`.
pub async fn delete(client: &mut AdminClient, user: &str, mechanism: ScramMechanism) -> Result<()> {
    let deletion = ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.to_string()))
        .with_mechanism(mechanism.code());
    alter(
        client,
        user,
        AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]),
    )
    .await
}

async fn alter(
    client: &mut AdminClient,
    user: &str,
    request: AlterUserScramCredentialsRequest,
) -> Result<()> {
    let (response, _) = client.any_broker().call(0, |_| request).await?;
    for result in &response.results {
        AdminError::check(result.error_code, result.error_message.as_deref(), || {
            format!("changing user {user}")
        })?;
    }
    Ok(())
}
