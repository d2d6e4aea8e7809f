//! Whom Postgres works for: each backend's CPU is put down to the process at the other end of
//! its connection (the service, the worker, anyone else), and the server's own processes
//! (WAL writer, checkpointer, …) to `pg_server`. The total stays the `postgres` component;
//! this only splits it, so that a cost per webhook in Postgres can be traced to who asked.
//!
//! A backend's title names its client's address, `127.0.0.1(40936)`; the client's port is
//! matched to the sockets the watched processes hold (`/proc/<pid>/fd` → socket inode →
//! `/proc/net/tcp{,6}` → local port).

use std::collections::{HashMap, HashSet};

/// The label a Postgres process's CPU goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The server's own processes: no client.
    Server,
    /// A backend, with its client's port.
    Backend(u16),
}

/// Reads a backend's role from its title words (`postgres: 15/main: user db host(port) state`).
/// A backend over a Unix socket (`[local]`) has no port and counts as the server's: nothing
/// the bench watches connects that way.
pub(crate) fn role(words: &[&str]) -> Role {
    let port = words.get(4).and_then(|host| {
        let (_, rest) = host.rsplit_once('(')?;
        rest.strip_suffix(')')?.parse().ok()
    });
    match (words.len(), port) {
        (5.., Some(port)) if !words[2].starts_with("background") => Role::Backend(port),
        _ => Role::Server,
    }
}

/// The label for a Postgres process: `pg_for_<client>` when a watched process holds the
/// other end, `pg_for_others` for any other client, `pg_server` for the server itself.
pub(crate) fn label(role: &Role, clients: &HashMap<u16, String>) -> String {
    match role {
        Role::Server => "pg_server".to_owned(),
        Role::Backend(port) => match clients.get(port) {
            Some(client) => format!("pg_for_{client}"),
            None => "pg_for_others".to_owned(),
        },
    }
}

/// The local ports of the TCP sockets each `(label, pid)` holds.
pub(crate) fn client_ports(pids: &[(String, u32)]) -> HashMap<u16, String> {
    let mut by_inode = HashMap::new();
    for (label, pid) in pids {
        for inode in socket_inodes(*pid) {
            by_inode.insert(inode, label.clone());
        }
    }
    let mut ports = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for (port, inode) in text.lines().skip(1).filter_map(port_and_inode) {
            if let Some(label) = by_inode.get(&inode) {
                ports.insert(port, label.clone());
            }
        }
    }
    ports
}

/// The socket inodes a process holds open.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .collect()
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One line of `/proc/net/tcp`: its local port (hex after the colon of the second field)
/// and its inode (the tenth field).
fn port_and_inode(line: &str) -> Option<(u16, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (_, port) = fields.get(1)?.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((port, inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(title: &str) -> Vec<&str> {
        title.split_whitespace().collect()
    }

    #[test]
    fn a_backend_is_known_by_its_clients_port_and_the_server_by_having_none() {
        let backend =
            words("postgres: 15/main: postgres teams_bridge_cost_head 127.0.0.1(40936) idle");
        assert_eq!(role(&backend), Role::Backend(40936));
        let v6 = words("postgres: 15/main: postgres db ::1(5001) INSERT");
        assert_eq!(role(&v6), Role::Backend(5001));
        for server in [
            "postgres: 15/main: walwriter",
            "postgres: 15/main: background writer",
            "postgres: 15/main: autovacuum launcher",
            "postgres: 15/main: logical replication launcher",
            "postgres: 15/main: postgres db [local] idle",
        ] {
            assert_eq!(role(&words(server)), Role::Server, "{server}");
        }
    }

    #[test]
    fn a_backend_goes_to_the_watched_process_holding_the_other_end() {
        let clients = HashMap::from([(40936, "service".to_owned()), (40937, "worker".to_owned())]);
        assert_eq!(label(&Role::Backend(40936), &clients), "pg_for_service");
        assert_eq!(label(&Role::Backend(40937), &clients), "pg_for_worker");
        assert_eq!(label(&Role::Backend(1), &clients), "pg_for_others");
        assert_eq!(label(&Role::Server, &clients), "pg_server");
    }

    #[test]
    fn proc_net_tcp_lines_give_the_local_port_and_the_inode() {
        let line = "   3: 0100007F:9E28 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 812345 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(port_and_inode(line), Some((0x9E28, 812345)));
        assert_eq!(port_and_inode("  sl  local_address rem_address"), None);
        assert_eq!(socket_inode("socket:[812345]"), Some(812345));
        assert_eq!(socket_inode("pipe:[9]"), None);
    }

    #[test]
    fn this_process_s_own_connection_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let port = stream.local_addr().unwrap().port();
        let me = [("me".to_owned(), std::process::id())];
        assert_eq!(client_ports(&me).get(&port).map(String::as_str), Some("me"));
    }
}
