//! One function per subcommand; [`run`] connects (to sagad, or for `conform` to the participant) and
//! dispatches.

mod conform;
mod list;
mod operator;
mod show;
mod start;
mod stats;

use crate::cli::{Cli, Command, SagadCommand};
use crate::connect::connect;
use crate::exit::{Failure, Outcome};
use crate::follow::follow;

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<Outcome, Failure> {
    let output = cli.output;
    let command = match cli.command {
        Command::Conform(args) => return conform::conform(args, output).await,
        Command::Sagad(command) => command,
    };
    let mut client = connect(&cli.connection).await?;
    match command {
        SagadCommand::Start(args) => start::start(&mut client, args, output).await,
        SagadCommand::List(args) => list::list(&mut client, args, output).await,
        SagadCommand::Show(saga) => show::show(&mut client, &saga.id, output).await,
        SagadCommand::History(saga) => show::history(&mut client, &saga.id, output).await,
        SagadCommand::Watch(args) => follow(&mut client, &args.id, output, args.timeout).await,
        SagadCommand::Abort(args) => operator::abort(&mut client, args, output).await,
        SagadCommand::Retry(args) => operator::retry(&mut client, args, output).await,
        SagadCommand::Resolve(args) => operator::resolve(&mut client, args, output).await,
        SagadCommand::Stats(args) => stats::stats(&mut client, args, output).await,
    }
}
