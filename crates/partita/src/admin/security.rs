//! `partita acls ...` and `partita users ...`: ACLs (as `kafka-acls.sh`) and SCRAM users (as
//! `kafka-configs.sh --entity-type users`).

use std::io::BufRead;

use partita_admin::acls::{self, Acl, AclFilter};
use partita_admin::users;
use partita_admin::AdminError;
use partita_broker::scram::ScramMechanism;

use super::table::Table;
use super::{print_json, ClusterArgs, Output};

#[derive(clap::Args)]
pub(crate) struct AclsArgs {
    #[command(subcommand)]
    command: AclsCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum AclsCommand {
    /// Add ACLs: each --operation for each --allow-principal and --deny-principal, on the
    /// resource named.
    Add(AddArgs),
    /// List the ACLs (of a resource, or a principal, if named).
    List(FilterArgs),
    /// Remove the ACLs the options select (every one of the resource's without more).
    Remove(FilterArgs),
}

/// The resource: exactly one of these.
#[derive(clap::Args)]
#[group(required = false, multiple = false)]
struct Resource {
    /// A topic (`*` for every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer or share group (`*` for every group).
    #[arg(long)]
    group: Option<String>,
    /// The cluster.
    #[arg(long)]
    cluster: bool,
    /// A transactional id.
    #[arg(long)]
    transactional_id: Option<String>,
}

impl Resource {
    fn named(&self) -> Option<(&'static str, String)> {
        if let Some(topic) = &self.topic {
            return Some(("TOPIC", topic.clone()));
        }
        if let Some(group) = &self.group {
            return Some(("GROUP", group.clone()));
        }
        if let Some(id) = &self.transactional_id {
            return Some(("TRANSACTIONAL_ID", id.clone()));
        }
        self.cluster
            .then(|| ("CLUSTER", "kafka-cluster".to_string()))
    }
}

#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    resource: Resource,
    /// `literal` (the name itself, or `*`) or `prefixed` (every name starting with it).
    #[arg(long, default_value = "literal")]
    resource_pattern_type: String,
    /// A principal to allow, e.g. User:alice (User:* for everyone); repeatable.
    #[arg(long)]
    allow_principal: Vec<String>,
    /// A principal to deny; repeatable. A DENY wins over any ALLOW.
    #[arg(long)]
    deny_principal: Vec<String>,
    /// The host the ACL applies to (default: every host).
    #[arg(long, default_value = "*")]
    host: String,
    /// Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs,
    /// IdempotentWrite, ClusterAction or All; repeatable.
    #[arg(long, required = true)]
    operation: Vec<String>,
}

#[derive(clap::Args)]
struct FilterArgs {
    #[command(flatten)]
    resource: Resource,
    /// `literal`, `prefixed`, `match` (every ACL that applies to the named resource) or
    /// `any` (the default).
    #[arg(long)]
    resource_pattern_type: Option<String>,
    /// Only this principal's ACLs.
    #[arg(long)]
    principal: Option<String>,
    /// Only ACLs of this operation.
    #[arg(long)]
    operation: Option<String>,
}

/// Kafka's operation names from the tools' spelling (`DescribeConfigs` or `describe-configs`).
fn operation_name(operation: &str) -> String {
    let mut name = String::new();
    let mut after_lower = false;
    for c in operation.chars() {
        if c.is_ascii_uppercase() && after_lower {
            name.push('_');
        }
        after_lower = c.is_ascii_lowercase();
        name.push(match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        });
    }
    name
}

fn filter_of(args: &FilterArgs) -> AclFilter {
    let named = args.resource.named();
    AclFilter {
        resource_type: named.as_ref().map(|(t, _)| t.to_string()),
        resource_name: named.map(|(_, n)| n),
        pattern_type: args.resource_pattern_type.clone(),
        principal: args.principal.clone(),
        host: None,
        operation: args.operation.as_deref().map(operation_name),
        permission: None,
    }
}

fn print_acls(output: Output, acls: &[Acl], verb: &str) -> Result<(), AdminError> {
    match output {
        Output::Json => print_json(&acls),
        Output::Text => {
            if !verb.is_empty() {
                println!("{verb} {} ACL(s).", acls.len());
            }
            let mut table = Table::new(&[
                "RESOURCE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ]);
            for acl in acls {
                table.row(vec![
                    acl.resource_type.clone(),
                    acl.resource_name.clone(),
                    acl.pattern_type.clone(),
                    acl.principal.clone(),
                    acl.host.clone(),
                    acl.operation.clone(),
                    acl.permission.clone(),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
    }
}

pub(crate) async fn run_acls(args: AclsArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        AclsCommand::Add(add) => {
            let (resource_type, resource_name) = add.resource.named().ok_or_else(|| {
                AdminError::InvalidInput(
                    "name the resource: --topic, --group, --cluster or --transactional-id".into(),
                )
            })?;
            if add.allow_principal.is_empty() && add.deny_principal.is_empty() {
                return Err(AdminError::InvalidInput(
                    "name a principal: --allow-principal or --deny-principal".into(),
                ));
            }
            let mut new = Vec::new();
            for (permission, principals) in [
                ("ALLOW", &add.allow_principal),
                ("DENY", &add.deny_principal),
            ] {
                for principal in principals {
                    for operation in &add.operation {
                        new.push(Acl {
                            resource_type: resource_type.to_string(),
                            resource_name: resource_name.clone(),
                            pattern_type: add.resource_pattern_type.to_ascii_uppercase(),
                            principal: principal.clone(),
                            host: add.host.clone(),
                            operation: operation_name(operation),
                            permission: permission.to_string(),
                        });
                    }
                }
            }
            acls::create(&mut client, &new).await?;
            print_acls(output, &new, "Added")
        }
        AclsCommand::List(filter) => {
            let listed = acls::list(&mut client, &filter_of(&filter)).await?;
            print_acls(output, &listed, "")
        }
        AclsCommand::Remove(filter) => {
            let removed = acls::remove(&mut client, &filter_of(&filter)).await?;
            print_acls(output, &removed, "Removed")
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(clap::Subcommand)]
enum UsersCommand {
    /// List the SCRAM users, their mechanisms and iterations.
    List,
    /// Set a user's SCRAM password (the user is created if new). The password is read from
    /// standard input unless --password gives it.
    SetPassword(SetPasswordArgs),
    /// Delete a user's SCRAM credential.
    Delete(UserArgs),
}

#[derive(clap::Args)]
struct UserArgs {
    /// The user name.
    #[arg(long)]
    user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-512")]
    mechanism: String,
}

#[derive(clap::Args)]
struct SetPasswordArgs {
    #[command(flatten)]
    user: UserArgs,
    /// The password (visible to other users of this machine: prefer standard input).
    #[arg(long)]
    password: Option<String>,
    /// PBKDF2 iterations, 4096 to 16384.
    #[arg(long, default_value_t = 8192)]
    iterations: i32,
}

fn mechanism(name: &str) -> Result<ScramMechanism, AdminError> {
    ScramMechanism::from_name(name).ok_or_else(|| {
        AdminError::InvalidInput(format!(
            "mechanism {name:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"
        ))
    })
}

pub(crate) async fn run_users(args: UsersArgs) -> Result<(), AdminError> {
    let output = args.cluster.output;
    let mut client = args.cluster.connect().await?;
    match args.command {
        UsersCommand::List => {
            let listed = users::list(&mut client).await?;
            match output {
                Output::Json => print_json(&listed)?,
                Output::Text => {
                    let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
                    for user in &listed {
                        table.row(vec![
                            user.user.clone(),
                            user.mechanism.clone(),
                            user.iterations.to_string(),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        UsersCommand::SetPassword(set) => {
            let mechanism = mechanism(&set.user.mechanism)?;
            let password = match set.password {
                Some(password) => password,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                        AdminError::InvalidInput(format!("reading the password: {e}"))
                    })?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                return Err(AdminError::InvalidInput("the password is empty".into()));
            }
            users::set_password(
                &mut client,
                &set.user.user,
                mechanism,
                &password,
                set.iterations,
            )
            .await?;
            if output == Output::Text {
                println!(
                    "Set the {} password of {}.",
                    mechanism.name(),
                    set.user.user
                );
            }
        }
        UsersCommand::Delete(user) => {
            let mechanism = mechanism(&user.mechanism)?;
            users::delete(&mut client, &user.user, mechanism).await?;
            if output == Output::Text {
                println!(
                    "Deleted the {} credential of {}.",
                    mechanism.name(),
                    user.user
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn operation_names_are_taken_as_the_tools_write_them() {
        assert_eq!(super::operation_name("Read"), "READ");
        assert_eq!(super::operation_name("DescribeConfigs"), "DESCRIBE_CONFIGS");
        assert_eq!(
            super::operation_name("describe-configs"),
            "DESCRIBE_CONFIGS"
        );
        assert_eq!(
            super::operation_name("IDEMPOTENT_WRITE"),
            "IDEMPOTENT_WRITE"
        );
    }
}
