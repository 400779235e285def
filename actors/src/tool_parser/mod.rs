//! The ToolParserActor (work in progress)
