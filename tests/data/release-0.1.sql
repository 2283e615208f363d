-- zerg 0.1.0 (commit b5265d4): tables made by create_all, rows by the ORM.
-- How it was made: tests/data/README.md.
BEGIN TRANSACTION;
CREATE TABLE agent_messages (
	id INTEGER NOT NULL, 
	agent_id INTEGER NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	content TEXT NOT NULL, 
	timestamp DATETIME NOT NULL, 
	CONSTRAINT pk_agent_messages PRIMARY KEY (id), 
	CONSTRAINT fk_agent_messages_agent_id_agents FOREIGN KEY(agent_id) REFERENCES agents (id) ON DELETE CASCADE
);
INSERT INTO "agent_messages" VALUES(1,1,'user','Remember: short answers.','2026-11-30 09:00:00.000000');
CREATE TABLE agent_threads (
	id INTEGER NOT NULL, 
	agent_id INTEGER NOT NULL, 
	title VARCHAR(255) NOT NULL, 
	thread_type VARCHAR(16) NOT NULL, 
	active BOOLEAN NOT NULL, 
	agent_state JSON, 
	memory_strategy VARCHAR(32) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_agent_threads PRIMARY KEY (id), 
	CONSTRAINT fk_agent_threads_agent_id_agents FOREIGN KEY(agent_id) REFERENCES agents (id) ON DELETE CASCADE
);
INSERT INTO "agent_threads" VALUES(1,1,'First chat','chat',1,'{"step": 2}','buffer','2026-11-30 09:00:00.000000','2026-11-30 09:01:00.000000');
INSERT INTO "agent_threads" VALUES(2,1,'Scheduled run','scheduled',0,NULL,'buffer','2026-11-30 09:00:00.000000','2026-11-30 09:00:00.000000');
CREATE TABLE agents (
	id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	system_instructions TEXT NOT NULL, 
	task_instructions TEXT NOT NULL, 
	model VARCHAR(100) NOT NULL, 
	schedule VARCHAR(100), 
	run_on_schedule BOOLEAN NOT NULL, 
	config JSON, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	next_run_at DATETIME, 
	last_run_at DATETIME, 
	CONSTRAINT pk_agents PRIMARY KEY (id)
);
INSERT INTO "agents" VALUES(1,'Morning digest','idle','Be brief.','Summarise the news.','offline','0 8 * * 1-5',1,'{"temperature": 0.2, "tags": ["news"]}',NULL,'2026-11-30 09:00:00.000000','2026-11-30 09:00:00.000000','2026-12-01 09:00:00.000000','2026-11-30 08:00:00.000000');
INSERT INTO "agents" VALUES(2,'Echo','error','','','offline',NULL,0,NULL,'provider timed out','2026-11-30 09:00:00.000000','2026-11-30 09:00:00.000000',NULL,NULL);
CREATE TABLE runs (
	id INTEGER NOT NULL, 
	agent_id INTEGER NOT NULL, 
	thread_id INTEGER, 
	"trigger" VARCHAR(16) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	owner VARCHAR(32), 
	scheduled_for DATETIME, 
	started_at DATETIME, 
	finished_at DATETIME, 
	duration_ms INTEGER, 
	error TEXT, 
	prompt_tokens INTEGER, 
	completion_tokens INTEGER, 
	total_tokens INTEGER, 
	created_at DATETIME NOT NULL, 
	CONSTRAINT pk_runs PRIMARY KEY (id), 
	CONSTRAINT uq_runs_agent_id_scheduled_for UNIQUE (agent_id, scheduled_for), 
	CONSTRAINT fk_runs_agent_id_agents FOREIGN KEY(agent_id) REFERENCES agents (id) ON DELETE CASCADE, 
	CONSTRAINT fk_runs_thread_id_agent_threads FOREIGN KEY(thread_id) REFERENCES agent_threads (id) ON DELETE CASCADE
);
INSERT INTO "runs" VALUES(1,1,1,'manual','success','3f2a9c1d',NULL,'2026-11-30 09:00:01.000000','2026-11-30 09:00:02.000000',1000,NULL,12,7,19,'2026-11-30 09:00:01.000000');
INSERT INTO "runs" VALUES(2,1,2,'schedule','failed',NULL,'2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','2026-11-30 08:01:00.000000',60000,'provider timed out',NULL,NULL,NULL,'2026-11-30 08:00:00.000000');
CREATE TABLE thread_messages (
	id INTEGER NOT NULL, 
	thread_id INTEGER NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	content TEXT NOT NULL, 
	tool_calls JSON, 
	tool_call_id VARCHAR(255), 
	name VARCHAR(255), 
	processed BOOLEAN NOT NULL, 
	partial BOOLEAN NOT NULL, 
	timestamp DATETIME NOT NULL, 
	CONSTRAINT pk_thread_messages PRIMARY KEY (id), 
	CONSTRAINT fk_thread_messages_thread_id_agent_threads FOREIGN KEY(thread_id) REFERENCES agent_threads (id) ON DELETE CASCADE
);
INSERT INTO "thread_messages" VALUES(1,1,'system','Be brief.',NULL,NULL,NULL,1,0,'2026-11-30 09:00:00.000000');
INSERT INTO "thread_messages" VALUES(2,1,'user','What can you do?',NULL,NULL,NULL,1,0,'2026-11-30 09:00:01.000000');
INSERT INTO "thread_messages" VALUES(3,1,'assistant','I am the offline model.','[{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]',NULL,NULL,1,0,'2026-11-30 09:00:02.000000');
INSERT INTO "thread_messages" VALUES(4,1,'tool','{}',NULL,'call_1','lookup',1,0,'2026-11-30 09:00:03.000000');
INSERT INTO "thread_messages" VALUES(5,1,'assistant','Cut sh',NULL,NULL,NULL,1,1,'2026-11-30 09:00:04.000000');
INSERT INTO "thread_messages" VALUES(6,1,'user','Still there?',NULL,NULL,NULL,0,0,'2026-11-30 09:00:05.000000');
CREATE INDEX ix_agent_messages_agent_id ON agent_messages (agent_id);
CREATE INDEX ix_agent_threads_agent_id ON agent_threads (agent_id);
CREATE INDEX ix_thread_messages_thread_id ON thread_messages (thread_id);
CREATE INDEX ix_runs_status ON runs (status);
CREATE INDEX ix_runs_agent_id ON runs (agent_id);
CREATE INDEX ix_runs_thread_id ON runs (thread_id);
CREATE UNIQUE INDEX uq_runs_active_thread ON runs (thread_id) WHERE status IN ('queued', 'running');
COMMIT;
