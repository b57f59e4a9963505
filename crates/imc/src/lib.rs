//! `imc`: an SMTP spool connector modelled on the Exchange 4.0 Internet Mail Connector.
pub mod fs;
