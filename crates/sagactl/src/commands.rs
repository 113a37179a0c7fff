//! One function per subcommand; [`run`] connects and dispatches.

mod list;
mod operator;
mod show;
mod start;

use crate::cli::{Cli, Command};
use crate::connect::connect;
use crate::exit::{Failure, Outcome};
use crate::follow::follow;

/// Runs the command `cli` names against sagad.
pub async fn run(cli: Cli) -> Result<Outcome, Failure> {
    let mut client = connect(&cli.connection).await?;
    let output = cli.output;
    match cli.command {
        Command::Start(args) => start::start(&mut client, args, output).await,
        Command::List(args) => list::list(&mut client, args, output).await,
        Command::Show(saga) => show::show(&mut client, &saga.id, output).await,
        Command::History(saga) => show::history(&mut client, &saga.id, output).await,
        Command::Watch(args) => follow(&mut client, &args.id, output, args.timeout).await,
        Command::Abort(args) => operator::abort(&mut client, args, output).await,
        Command::Retry(args) => operator::retry(&mut client, args, output).await,
    }
}
