-- Grades (ClassConnect). Course grades are kept one per post; task grades one per
-- (course, task, student), a later grade replacing the earlier. The worker keeps daily
-- tallies per course, per student and per course and student in the same transaction,
-- so every read sums days, never grades. Grades are in thousandths, summed exactly.
CREATE TABLE grade_records (
    id         TEXT    PRIMARY KEY, -- the job that stored it
    student_id TEXT    NOT NULL,
    course_id  TEXT    NOT NULL,
    units      BIGINT  NOT NULL,
    on_time    BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX grade_records_by_course ON grade_records (course_id, created_at);

CREATE TABLE task_grades (
    course_id  TEXT    NOT NULL,
    task_id    TEXT    NOT NULL,
    student_id TEXT    NOT NULL,
    units      BIGINT  NOT NULL,
    on_time    BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (course_id, task_id, student_id)
);
CREATE INDEX task_grades_by_student ON task_grades (course_id, student_id);

CREATE TABLE grade_days_course (
    course_id     TEXT   NOT NULL,
    day           BIGINT NOT NULL, -- Unix day number (UTC)
    grade_sum     BIGINT NOT NULL,
    grade_count   BIGINT NOT NULL,
    on_time_count BIGINT NOT NULL,
    task_count    BIGINT NOT NULL,
    PRIMARY KEY (course_id, day)
);
CREATE TABLE grade_days_student (
    student_id    TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    grade_sum     BIGINT NOT NULL,
    grade_count   BIGINT NOT NULL,
    on_time_count BIGINT NOT NULL,
    task_count    BIGINT NOT NULL,
    PRIMARY KEY (student_id, day)
);
CREATE TABLE grade_days_course_student (
    course_id     TEXT   NOT NULL,
    student_id    TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    grade_sum     BIGINT NOT NULL,
    grade_count   BIGINT NOT NULL,
    on_time_count BIGINT NOT NULL,
    task_count    BIGINT NOT NULL,
    PRIMARY KEY (course_id, student_id, day)
);
