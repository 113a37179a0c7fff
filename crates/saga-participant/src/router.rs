//! A [`StepHandler`] built from a table of `async fn`s, one per action and direction, so a participant
//! is a list of functions instead of a hand-written `match` on the action name.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use sqlx::PgConnection;

use crate::{Direction, StepCall, StepError, StepHandler, StepOutput};

/// The future an action returns, boxed so that actions of different types share one table.
pub type ActionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<StepOutput, StepError>> + Send + 'a>>;

/// One action: implemented for every `async fn(&StepCall, &mut PgConnection) -> Result<StepOutput,
/// StepError>` whose future is `Send`.
pub trait Action: Send + Sync + 'static {
    /// Runs the action inside the barrier's transaction.
    fn run<'a>(&'a self, call: &'a StepCall, tx: &'a mut PgConnection) -> ActionFuture<'a>;
}

/// The shape of an action function for one lifetime. A separate trait because the future an `async fn`
/// returns borrows its arguments: it has a different type for every lifetime, which a plain `Fn` bound
/// cannot name.
pub trait ActionFn<'a>: Send + Sync + 'static {
    /// The future the function returns for arguments borrowed for `'a`.
    type Future: Future<Output = Result<StepOutput, StepError>> + Send + 'a;

    /// Calls the function.
    fn call(&self, call: &'a StepCall, tx: &'a mut PgConnection) -> Self::Future;
}

impl<'a, F, Fut> ActionFn<'a> for F
where
    F: Fn(&'a StepCall, &'a mut PgConnection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<StepOutput, StepError>> + Send + 'a,
{
    type Future = Fut;

    fn call(&self, call: &'a StepCall, tx: &'a mut PgConnection) -> Fut {
        self(call, tx)
    }
}

impl<F> Action for F
where
    F: for<'a> ActionFn<'a>,
{
    fn run<'a>(&'a self, call: &'a StepCall, tx: &'a mut PgConnection) -> ActionFuture<'a> {
        Box::pin(ActionFn::call(self, call, tx))
    }
}

/// Routes each call to the function registered for its action and direction.
///
/// ```
/// use saga_participant::{Router, StepCall, StepError, StepOutput};
/// use sqlx::PgConnection;
///
/// async fn reserve(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
///     Ok(StepOutput::new())
/// }
/// async fn release(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
///     Ok(StepOutput::new())
/// }
///
/// let router = Router::new().execute("Reserve", reserve).compensate("Release", release);
/// ```
#[derive(Default)]
pub struct Router {
    execute: HashMap<String, Box<dyn Action>>,
    compensate: HashMap<String, Box<dyn Action>>,
}

impl Router {
    /// A router with no actions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the forward action `name`.
    ///
    /// # Panics
    /// When `name` is already registered as a forward action: a programming error found at start-up.
    pub fn execute(mut self, name: &str, action: impl Action) -> Self {
        register(&mut self.execute, Direction::Execute, name, action);
        self
    }

    /// Registers the compensating action `name`.
    ///
    /// # Panics
    /// When `name` is already registered as a compensating action.
    pub fn compensate(mut self, name: &str, action: impl Action) -> Self {
        register(&mut self.compensate, Direction::Compensate, name, action);
        self
    }

    fn table(&self, direction: Direction) -> &HashMap<String, Box<dyn Action>> {
        match direction {
            Direction::Execute => &self.execute,
            Direction::Compensate => &self.compensate,
        }
    }

    async fn dispatch(
        &self,
        direction: Direction,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match self.table(direction).get(&call.action) {
            Some(action) => action.run(call, tx).await,
            // The service checks `handles` first; this only guards a direct caller.
            None => Err(StepError::invalid_argument(format!(
                "unknown action {}",
                call.action
            ))),
        }
    }
}

fn register(
    table: &mut HashMap<String, Box<dyn Action>>,
    direction: Direction,
    name: &str,
    action: impl Action,
) {
    let previous = table.insert(name.to_owned(), Box::new(action));
    assert!(
        previous.is_none(),
        "action {name} is registered twice for {}",
        direction.as_str()
    );
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut execute: Vec<_> = self.execute.keys().collect();
        let mut compensate: Vec<_> = self.compensate.keys().collect();
        execute.sort();
        compensate.sort();
        f.debug_struct("Router")
            .field("execute", &execute)
            .field("compensate", &compensate)
            .finish()
    }
}

impl StepHandler for Router {
    fn handles(&self, direction: Direction, action: &str) -> bool {
        self.table(direction).contains_key(action)
    }

    async fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        self.dispatch(Direction::Execute, call, tx).await
    }

    async fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        self.dispatch(Direction::Compensate, call, tx).await
    }
}
