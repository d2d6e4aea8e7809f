//! TEMPORARY: replaced by the HR grammar module.
pub struct Command;
pub fn parse(_html: &str) -> Command {
    Command
}
impl Command {
    pub fn summary(&self) -> String {
        "Recorded".into()
    }
}
